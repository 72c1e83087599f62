-- Haneul schema, PostgreSQL flavour. Times are Unix milliseconds; JSON columns hold serde values.
CREATE TABLE orgs (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    class TEXT NOT NULL,
    country TEXT NOT NULL,
    parent BIGINT REFERENCES orgs(id),
    created_at BIGINT NOT NULL
);
CREATE TABLE projects (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    weight BIGINT NOT NULL,
    quotas TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, name)
);
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    org_id BIGINT REFERENCES orgs(id),
    created_at BIGINT NOT NULL
);
CREATE TABLE project_members (
    project_id BIGINT NOT NULL REFERENCES projects(id),
    user_id BIGINT NOT NULL REFERENCES users(id),
    PRIMARY KEY (project_id, user_id)
);
CREATE TABLE tokens (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE pools (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    owner BIGINT REFERENCES orgs(id),
    lending TEXT NOT NULL
);
CREATE TABLE blocks (
    id BIGSERIAL PRIMARY KEY,
    pool_id BIGINT NOT NULL REFERENCES pools(id),
    name TEXT NOT NULL,
    UNIQUE (pool_id, name)
);
CREATE TABLE nodes (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    block_id BIGINT NOT NULL REFERENCES blocks(id),
    gpu_model TEXT NOT NULL,
    gpus BIGINT NOT NULL,
    gpu_memory_mib BIGINT NOT NULL,
    nvlink_domain BIGINT NOT NULL,
    cpu_milli BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    state TEXT NOT NULL,
    down_reason TEXT,
    agent_user BIGINT REFERENCES users(id),
    last_heartbeat BIGINT NOT NULL
);
CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id),
    user_id BIGINT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    command TEXT NOT NULL,
    state TEXT NOT NULL,
    submitted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    exit_code BIGINT,
    reason TEXT
);
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_project ON jobs (project_id, id);
CREATE TABLE attempts (
    id BIGSERIAL PRIMARY KEY,
    job_id BIGINT NOT NULL REFERENCES jobs(id),
    fence BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    placement TEXT NOT NULL,
    gpu_model TEXT,
    borrowing BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    stop_reason TEXT,
    kill_at BIGINT,
    deadline BIGINT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT,
    exit_code BIGINT,
    gpu_ms BIGINT NOT NULL,
    UNIQUE (job_id, fence)
);
CREATE INDEX attempts_state ON attempts (state);
CREATE TABLE tasks (
    attempt_id BIGINT NOT NULL REFERENCES attempts(id),
    idx BIGINT NOT NULL,
    node_id BIGINT NOT NULL REFERENCES nodes(id),
    gpus TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_code BIGINT,
    PRIMARY KEY (attempt_id, idx)
);
CREATE INDEX tasks_node ON tasks (node_id, state);
CREATE TABLE logs (
    id BIGSERIAL PRIMARY KEY,
    attempt_id BIGINT NOT NULL REFERENCES attempts(id),
    task BIGINT NOT NULL,
    data TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX logs_attempt ON logs (attempt_id, id);
CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    job_id BIGINT,
    attempt_id BIGINT,
    node_id BIGINT,
    detail TEXT NOT NULL
);
CREATE INDEX events_job ON events (job_id, seq);
CREATE TABLE awards (
    id BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id),
    gpu_model TEXT NOT NULL,
    gpu_hours BIGINT NOT NULL,
    valid_from BIGINT NOT NULL,
    valid_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE audit (
    seq BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE FUNCTION audit_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'audit log is append-only'; END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
