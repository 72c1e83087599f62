-- Awards, the GPU-time ledger, programmes (calls, applications, scores) and compliance.
-- Times are Unix milliseconds; GPU time is GPU-milliseconds; weights are thousandths.
ALTER TABLE orgs ADD COLUMN parent_country TEXT;
-- `verified` for rows that predate verification: they were registered by a centre admin.
ALTER TABLE orgs ADD COLUMN verification TEXT NOT NULL DEFAULT 'verified';
-- Whole GPUs the project may hold at once under this award (its guarantee); 0 for none.
ALTER TABLE awards ADD COLUMN gpu_quota BIGINT NOT NULL DEFAULT 0;
ALTER TABLE awards ADD COLUMN application_id BIGINT;
CREATE TABLE award_changes (
    id BIGSERIAL PRIMARY KEY,
    award_id BIGINT NOT NULL REFERENCES awards(id),
    gpu_hours BIGINT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX award_changes_award ON award_changes (award_id);
CREATE TABLE gpu_weights (
    gpu_model TEXT PRIMARY KEY,
    weight_milli BIGINT NOT NULL
);
-- One row per attempt and kind: the unique key is what makes a charge happen exactly once.
CREATE TABLE ledger (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    attempt_id BIGINT NOT NULL REFERENCES attempts(id),
    project_id BIGINT NOT NULL REFERENCES projects(id),
    org_id BIGINT NOT NULL REFERENCES orgs(id),
    award_id BIGINT REFERENCES awards(id),
    gpu_model TEXT NOT NULL,
    gpu_ms BIGINT NOT NULL,
    weight_milli BIGINT NOT NULL,
    charged_ms BIGINT NOT NULL,
    UNIQUE (attempt_id, kind)
);
CREATE INDEX ledger_project ON ledger (project_id, at);
CREATE INDEX ledger_award ON ledger (award_id);
CREATE FUNCTION ledger_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_no_change BEFORE UPDATE OR DELETE ON ledger
FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER award_changes_no_change BEFORE UPDATE OR DELETE ON award_changes
FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
-- Notices to operators (award warnings, compute threshold, underuse), each raised once.
CREATE TABLE notices (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    project_id BIGINT NOT NULL REFERENCES projects(id),
    award_id BIGINT NOT NULL,
    detail TEXT NOT NULL,
    UNIQUE (kind, project_id, award_id)
);
CREATE TABLE denied_parties (
    id BIGSERIAL PRIMARY KEY,
    name_key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    country TEXT NOT NULL,
    source TEXT NOT NULL,
    added_at BIGINT NOT NULL
);
CREATE TABLE calls (
    id BIGSERIAL PRIMARY KEY,
    programme TEXT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    gpu_model TEXT NOT NULL,
    capacity_gpus BIGINT NOT NULL,
    tracks TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE applications (
    id BIGSERIAL PRIMARY KEY,
    call_id BIGINT NOT NULL REFERENCES calls(id),
    project_id BIGINT NOT NULL REFERENCES projects(id),
    track TEXT NOT NULL,
    gpus BIGINT NOT NULL,
    days BIGINT NOT NULL,
    region TEXT NOT NULL,
    plan TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (call_id, project_id)
);
CREATE TABLE scores (
    application_id BIGINT NOT NULL REFERENCES applications(id),
    reviewer TEXT NOT NULL,
    score BIGINT NOT NULL,
    comment TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (application_id, reviewer)
);
-- Default class weights: the catalogue's relative training throughput (crates/haneul-sim/
-- catalogue.toml, H100 = 1.0). An operator changes them with `PUT /v1/gpu-weights`.
INSERT INTO gpu_weights (gpu_model, weight_milli) VALUES ('H100', 1000), ('H200', 1300), ('B200', 2200);
