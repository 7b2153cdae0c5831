-- PostgreSQL twin of migrations/sqlite/0006 (JSON read with jsonb operators, GREATEST for
-- SQLite's two-argument MAX).
ALTER TABLE metric_buckets ADD COLUMN caller_errors BIGINT NOT NULL DEFAULT 0;
ALTER TABLE metric_buckets ADD COLUMN rejected BIGINT NOT NULL DEFAULT 0;
UPDATE metric_buckets SET
    rejected = COALESCE((error_codes::jsonb ->> 'CIRCUIT_OPEN')::bigint, 0),
    caller_errors = COALESCE((error_codes::jsonb ->> 'INVALID_PARAMETERS')::bigint, 0)
        + COALESCE((error_codes::jsonb ->> 'INVALID_TEMPLATE')::bigint, 0)
        + COALESCE((error_codes::jsonb ->> 'UNSUPPORTED_OPERATION')::bigint, 0);
UPDATE metric_buckets SET failures = GREATEST(0, failures - rejected - caller_errors);
