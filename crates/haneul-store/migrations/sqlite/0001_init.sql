-- Haneul schema, SQLite flavour. Times are Unix milliseconds; JSON columns hold serde values.
CREATE TABLE orgs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    class TEXT NOT NULL,
    country TEXT NOT NULL,
    parent INTEGER REFERENCES orgs(id),
    created_at INTEGER NOT NULL
);
CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    weight INTEGER NOT NULL,
    quotas TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (org_id, name)
);
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    org_id INTEGER REFERENCES orgs(id),
    created_at INTEGER NOT NULL
);
CREATE TABLE project_members (
    project_id INTEGER NOT NULL REFERENCES projects(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    PRIMARY KEY (project_id, user_id)
);
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE pools (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    owner INTEGER REFERENCES orgs(id),
    lending TEXT NOT NULL
);
CREATE TABLE blocks (
    id INTEGER PRIMARY KEY,
    pool_id INTEGER NOT NULL REFERENCES pools(id),
    name TEXT NOT NULL,
    UNIQUE (pool_id, name)
);
CREATE TABLE nodes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    block_id INTEGER NOT NULL REFERENCES blocks(id),
    gpu_model TEXT NOT NULL,
    gpus INTEGER NOT NULL,
    gpu_memory_mib INTEGER NOT NULL,
    nvlink_domain INTEGER NOT NULL,
    cpu_milli INTEGER NOT NULL,
    memory_mib INTEGER NOT NULL,
    state TEXT NOT NULL,
    down_reason TEXT,
    agent_user INTEGER REFERENCES users(id),
    last_heartbeat INTEGER NOT NULL
);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    command TEXT NOT NULL,
    state TEXT NOT NULL,
    submitted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    exit_code INTEGER,
    reason TEXT
);
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_project ON jobs (project_id, id);
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    fence INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    placement TEXT NOT NULL,
    gpu_model TEXT,
    borrowing BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    stop_reason TEXT,
    kill_at INTEGER,
    deadline INTEGER,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    exit_code INTEGER,
    gpu_ms INTEGER NOT NULL,
    UNIQUE (job_id, fence)
);
CREATE INDEX attempts_state ON attempts (state);
CREATE TABLE tasks (
    attempt_id INTEGER NOT NULL REFERENCES attempts(id),
    idx INTEGER NOT NULL,
    node_id INTEGER NOT NULL REFERENCES nodes(id),
    gpus TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    PRIMARY KEY (attempt_id, idx)
);
CREATE INDEX tasks_node ON tasks (node_id, state);
CREATE TABLE logs (
    id INTEGER PRIMARY KEY,
    attempt_id INTEGER NOT NULL REFERENCES attempts(id),
    task INTEGER NOT NULL,
    data TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX logs_attempt ON logs (attempt_id, id);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    job_id INTEGER,
    attempt_id INTEGER,
    node_id INTEGER,
    detail TEXT NOT NULL
);
CREATE INDEX events_job ON events (job_id, seq);
CREATE TABLE awards (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    gpu_model TEXT NOT NULL,
    gpu_hours INTEGER NOT NULL,
    valid_from INTEGER NOT NULL,
    valid_until INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
