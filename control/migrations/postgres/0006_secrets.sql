-- Secrets: write-only values guests read as environment variables. Values are encrypted
-- with the operator's key (XChaCha20-Poly1305; `key_id` names the key, so a rotation can
-- find what is still under the old one). Each release keeps the secrets it was made with,
-- encrypted the same way, so a rollback brings back the values of its time.
CREATE TABLE secrets (
    app_id TEXT NOT NULL REFERENCES apps(id),
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, name)
);

ALTER TABLE releases ADD COLUMN secrets TEXT;
ALTER TABLE releases ADD COLUMN secrets_key_id TEXT;
