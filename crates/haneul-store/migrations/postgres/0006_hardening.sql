-- API hardening (issue 15).
--
-- Log chunks holding NUL are stored escaped (`\0` for NUL, `\\` for a backslash) with
-- `escaped` = 1, since PostgreSQL text cannot hold NUL; every other chunk is stored as sent.
ALTER TABLE logs ADD COLUMN escaped BIGINT NOT NULL DEFAULT 0;

-- Tokens may expire (NULL: never).
ALTER TABLE tokens ADD COLUMN expires_at BIGINT;

-- Answers to creating POSTs sent with an `Idempotency-Key`, per user and key, kept 24 hours:
-- the same key and body answers the stored result again. `resource` is the job a submit
-- created (its answer is the job as it is now: the key is written in the submit's transaction).
CREATE TABLE idempotency (
    user_id BIGINT NOT NULL REFERENCES users(id),
    idem_key TEXT NOT NULL,
    route TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    status BIGINT NOT NULL,
    answer TEXT NOT NULL,
    resource BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);

-- The portal's sessions: the SHA-256 of the cookie's random id, the token signed in with
-- (revoking it ends the session), idle and absolute expiry, sign-out.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    token_id BIGINT NOT NULL REFERENCES tokens(id),
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
