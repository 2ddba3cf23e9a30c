-- Release numbers come from a per-app counter: the UPDATE that takes the next number also
-- locks the app's row until the transaction ends, so concurrent CreateRelease calls get
-- distinct numbers (no MAX(number) + 1 race).
ALTER TABLE apps ADD COLUMN release_seq BIGINT NOT NULL DEFAULT 0;
UPDATE apps SET release_seq = (SELECT COALESCE(MAX(number), 0) FROM releases WHERE releases.app_id = apps.id);
