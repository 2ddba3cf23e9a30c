-- Dashboard: local users (argon2 password hashes) and sign-in sessions.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(id),
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The cookie holds a random secret; only its sha256 is stored.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(id),
    subject TEXT NOT NULL,
    admin BIGINT NOT NULL DEFAULT 0,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expires_at);
