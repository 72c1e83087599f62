-- Awards, the GPU-time ledger, programmes (calls, applications, scores) and compliance.
-- Times are Unix milliseconds; GPU time is GPU-milliseconds; weights are thousandths.
ALTER TABLE orgs ADD COLUMN parent_country TEXT;
-- `verified` for rows that predate verification: they were registered by a centre admin.
ALTER TABLE orgs ADD COLUMN verification TEXT NOT NULL DEFAULT 'verified';
-- Whole GPUs the project may hold at once under this award (its guarantee); 0 for none.
ALTER TABLE awards ADD COLUMN gpu_quota INTEGER NOT NULL DEFAULT 0;
ALTER TABLE awards ADD COLUMN application_id INTEGER;
CREATE TABLE award_changes (
    id INTEGER PRIMARY KEY,
    award_id INTEGER NOT NULL REFERENCES awards(id),
    gpu_hours INTEGER NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX award_changes_award ON award_changes (award_id);
CREATE TABLE gpu_weights (
    gpu_model TEXT PRIMARY KEY,
    weight_milli INTEGER NOT NULL
);
-- One row per attempt and kind: the unique key is what makes a charge happen exactly once.
CREATE TABLE ledger (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    attempt_id INTEGER NOT NULL REFERENCES attempts(id),
    project_id INTEGER NOT NULL REFERENCES projects(id),
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    award_id INTEGER REFERENCES awards(id),
    gpu_model TEXT NOT NULL,
    gpu_ms INTEGER NOT NULL,
    weight_milli INTEGER NOT NULL,
    charged_ms INTEGER NOT NULL,
    UNIQUE (attempt_id, kind)
);
CREATE INDEX ledger_project ON ledger (project_id, at);
CREATE INDEX ledger_award ON ledger (award_id);
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER award_changes_no_update BEFORE UPDATE ON award_changes
BEGIN SELECT RAISE(ABORT, 'award changes are append-only'); END;
CREATE TRIGGER award_changes_no_delete BEFORE DELETE ON award_changes
BEGIN SELECT RAISE(ABORT, 'award changes are append-only'); END;
-- Notices to operators (award warnings, compute threshold, underuse), each raised once.
CREATE TABLE notices (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    award_id INTEGER NOT NULL,
    detail TEXT NOT NULL,
    UNIQUE (kind, project_id, award_id)
);
CREATE TABLE denied_parties (
    id INTEGER PRIMARY KEY,
    name_key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    country TEXT NOT NULL,
    source TEXT NOT NULL,
    added_at INTEGER NOT NULL
);
CREATE TABLE calls (
    id INTEGER PRIMARY KEY,
    programme TEXT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    gpu_model TEXT NOT NULL,
    capacity_gpus INTEGER NOT NULL,
    tracks TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE applications (
    id INTEGER PRIMARY KEY,
    call_id INTEGER NOT NULL REFERENCES calls(id),
    project_id INTEGER NOT NULL REFERENCES projects(id),
    track TEXT NOT NULL,
    gpus INTEGER NOT NULL,
    days INTEGER NOT NULL,
    region TEXT NOT NULL,
    plan TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (call_id, project_id)
);
CREATE TABLE scores (
    application_id INTEGER NOT NULL REFERENCES applications(id),
    reviewer TEXT NOT NULL,
    score INTEGER NOT NULL,
    comment TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (application_id, reviewer)
);
-- Default class weights: the catalogue's relative training throughput (crates/haneul-sim/
-- catalogue.toml, H100 = 1.0). An operator changes them with `PUT /v1/gpu-weights`.
INSERT INTO gpu_weights (gpu_model, weight_milli) VALUES ('H100', 1000), ('H200', 1300), ('B200', 2200);
