-- HostFactory requests (acquire and return) and the machines they hold. Written before the
-- answer is sent, so a restart loses nothing.
CREATE TABLE hf_requests (
    request_id       TEXT PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('acquire', 'return')),
    template_id      TEXT,
    template         TEXT,                  -- JSON snapshot of the template at request time
    requested_count  INTEGER NOT NULL,
    provider_name    TEXT,                  -- the template's providerName, if it names one
    strategy         TEXT,                  -- where the machines were made
    state            TEXT NOT NULL CHECK (state IN ('pending', 'provisioning', 'in_progress', 'done', 'failed')),
    message          TEXT NOT NULL DEFAULT '',
    resource_id      TEXT,
    provider_api     TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,      -- epoch ms
    updated_at       INTEGER NOT NULL
);
CREATE INDEX hf_requests_by_state ON hf_requests (state);

CREATE TABLE hf_machines (
    machine_id         TEXT PRIMARY KEY NOT NULL,
    request_id         TEXT NOT NULL REFERENCES hf_requests (request_id),
    template_id        TEXT,
    strategy           TEXT NOT NULL,
    state              TEXT NOT NULL,       -- EC2 words: pending, running, shutting-down, terminated, stopping, stopped
    failed             INTEGER NOT NULL DEFAULT 0,
    delivered          INTEGER NOT NULL DEFAULT 0,   -- seen running at least once
    message            TEXT NOT NULL DEFAULT '',
    private_ip         TEXT,
    public_ip          TEXT,
    private_dns        TEXT,
    instance_type      TEXT,
    price_type         TEXT,
    launch_time        INTEGER,             -- epoch seconds
    resource_id        TEXT,
    provider_api       TEXT,
    reclaim_notice     TEXT,
    reclaimed_at       INTEGER,             -- epoch ms: when the cloud was seen taking it back
    return_request_id  TEXT REFERENCES hf_requests (request_id),
    return_sent_at     INTEGER,             -- epoch ms: TERMINATE_INSTANCES accepted
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX hf_machines_by_request ON hf_machines (request_id);
CREATE INDEX hf_machines_by_return ON hf_machines (return_request_id);
CREATE INDEX hf_machines_by_name ON hf_machines (private_dns);
CREATE INDEX hf_machines_by_template ON hf_machines (template_id, state);
