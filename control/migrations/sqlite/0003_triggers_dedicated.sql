-- Events in: CloudEvent types and NATS subjects that invoke an app. A (kind, value) pair
-- belongs to one app across all tenants, so no tenant can take another's events.
CREATE TABLE triggers (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id),
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    path TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (kind, value)
);
CREATE INDEX triggers_app ON triggers(app_id);

-- Dedicated mode: the app runs in a Knative Service of its own; the control plane records
-- what it last observed of that Service.
ALTER TABLE apps ADD COLUMN dedicated BIGINT NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN dedicated_ready BIGINT NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN dedicated_url TEXT;
ALTER TABLE apps ADD COLUMN dedicated_message TEXT;
ALTER TABLE apps ADD COLUMN dedicated_updated_at BIGINT;
