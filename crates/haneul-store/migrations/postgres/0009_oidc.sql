-- Sign-in with an institution's identity provider (issue 23): the stable link from an
-- issuer's subject to a Haneul user, and whether the organisation's administrator has let
-- the account in. A user provisioned from claims has one link; tokens made by operators
-- never need one.
CREATE TABLE oidc_links (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id BIGINT NOT NULL UNIQUE REFERENCES users(id),
    email TEXT,
    created_at BIGINT NOT NULL,
    approved_at BIGINT,
    approved_by TEXT,
    PRIMARY KEY (issuer, subject)
);
