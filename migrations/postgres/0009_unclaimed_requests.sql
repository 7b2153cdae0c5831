-- PostgreSQL twin of migrations/sqlite/0009.
ALTER TABLE hf_requests ADD COLUMN claimed_at BIGINT;
UPDATE hf_requests SET claimed_at = created_at;
CREATE INDEX hf_requests_unclaimed ON hf_requests (created_at)
    WHERE claimed_at IS NULL AND kind = 'acquire';
