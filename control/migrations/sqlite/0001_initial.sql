-- Platform control plane schema (SQLite). Times are Unix milliseconds.
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    last_used_at INTEGER
);
CREATE INDEX tokens_tenant ON tokens(tenant);

CREATE TABLE apps (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    live_release_id TEXT,
    split_release_id TEXT,
    split_weight INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant, name)
);

-- One row per tenant and content; the bytes are stored once per digest in the blob store.
CREATE TABLE modules (
    tenant TEXT NOT NULL REFERENCES tenants(id),
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    abi TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, digest)
);

-- Ahead-of-time compilation per module digest and engine fingerprint.
CREATE TABLE artifacts (
    digest TEXT NOT NULL,
    engine TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    claimed_at INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (digest, engine)
);

CREATE TABLE releases (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    module_digest TEXT NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    activate_when_ready INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    UNIQUE (app_id, number)
);
CREATE INDEX releases_digest ON releases(module_digest);

-- Every time a release went live, for roll back to "the one before".
CREATE TABLE activations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    release_id TEXT NOT NULL,
    at INTEGER NOT NULL
);

-- Routes are unique across all tenants: a host and prefix serve one app.
CREATE TABLE routes (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(id),
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    host TEXT NOT NULL,
    prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (host, prefix)
);

-- The feed revision: every serving change increments it in the same transaction.
CREATE TABLE feed_state (
    id INTEGER PRIMARY KEY,
    revision INTEGER NOT NULL
);
INSERT INTO feed_state (id, revision) VALUES (1, 0);
