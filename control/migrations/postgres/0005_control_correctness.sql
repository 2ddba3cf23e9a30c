-- Release numbers come from a per-app counter: the UPDATE that takes the next number also
-- locks the app's row until the transaction ends, so concurrent CreateRelease calls get
-- distinct numbers (no MAX(number) + 1 race).
ALTER TABLE apps ADD COLUMN release_seq BIGINT NOT NULL DEFAULT 0;
UPDATE apps SET release_seq = (SELECT COALESCE(MAX(number), 0) FROM releases WHERE releases.app_id = apps.id);

-- Token roles: member (its tenant), admin (every tenant), runtime (reads the serving feed,
-- modules and artifacts, nothing else). `admin` is kept in step for older readers.
ALTER TABLE tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
UPDATE tokens SET role = 'admin' WHERE admin <> 0;

-- Dashboard user names are unique per tenant, not globally: a global name told one tenant,
-- by collision, which names another uses. Sign-in names the tenant (`user@tenant`).
ALTER TABLE users DROP CONSTRAINT users_username_key;
ALTER TABLE users ADD CONSTRAINT users_tenant_username_key UNIQUE (tenant, username);

-- Compile state per tenant: each tenant's upload is its own compile job, so a tenant never
-- learns from the state (or the speed) of its compile that another tenant uploaded the same
-- bytes. The artifact blob stays one per digest and engine.
CREATE TABLE artifacts_by_tenant (
    tenant TEXT NOT NULL REFERENCES tenants(id),
    digest TEXT NOT NULL,
    engine TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    claimed_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, digest, engine)
);
INSERT INTO artifacts_by_tenant (tenant, digest, engine, state, error, claimed_at, updated_at)
    SELECT m.tenant, a.digest, a.engine, a.state, a.error, a.claimed_at, a.updated_at
    FROM artifacts a JOIN modules m ON m.digest = a.digest;
DROP TABLE artifacts;
ALTER TABLE artifacts_by_tenant RENAME TO artifacts;
