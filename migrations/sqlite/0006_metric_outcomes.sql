-- Operations that say nothing of the provider are counted apart: the caller's mistakes
-- (invalid parameters or template, an unsupported operation) and calls the circuit breaker
-- refused. Success rates and latencies are over successes and failures only.
ALTER TABLE metric_buckets ADD COLUMN caller_errors INTEGER NOT NULL DEFAULT 0;
ALTER TABLE metric_buckets ADD COLUMN rejected INTEGER NOT NULL DEFAULT 0;
-- Earlier buckets counted these among the failures; their error codes say how many. (Their
-- latencies stay as recorded: a bucket does not say which latencies were whose.)
UPDATE metric_buckets SET
    rejected = COALESCE(json_extract(error_codes, '$.CIRCUIT_OPEN'), 0),
    caller_errors = COALESCE(json_extract(error_codes, '$.INVALID_PARAMETERS'), 0)
        + COALESCE(json_extract(error_codes, '$.INVALID_TEMPLATE'), 0)
        + COALESCE(json_extract(error_codes, '$.UNSUPPORTED_OPERATION'), 0);
UPDATE metric_buckets SET failures = MAX(0, failures - rejected - caller_errors);
