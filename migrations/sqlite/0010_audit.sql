-- The audit trail: one row per cloud-changing call a provider made (create, terminate, fleet
-- or group change, launch template change), whatever its answer, with what caused it: the
-- HostFactory request ids, the operator route and the name of the token that called it.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    strategy    TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    error_code  TEXT,
    request_ids TEXT NOT NULL,
    route       TEXT,
    token       TEXT
);

-- Read by time range (and pruned by age); a request's rows are found through request_ids.
CREATE INDEX audit_by_age ON audit (at);
