-- PostgreSQL twin of migrations/sqlite/0002.
CREATE TABLE hf_requests (
    request_id       TEXT PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('acquire', 'return')),
    template_id      TEXT,
    template         TEXT,
    requested_count  BIGINT NOT NULL,
    provider_name    TEXT,
    strategy         TEXT,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'provisioning', 'in_progress', 'done', 'failed')),
    message          TEXT NOT NULL DEFAULT '',
    resource_id      TEXT,
    provider_api     TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX hf_requests_by_state ON hf_requests (state);

CREATE TABLE hf_machines (
    machine_id         TEXT PRIMARY KEY NOT NULL,
    request_id         TEXT NOT NULL REFERENCES hf_requests (request_id),
    template_id        TEXT,
    strategy           TEXT NOT NULL,
    state              TEXT NOT NULL,
    failed             BIGINT NOT NULL DEFAULT 0,
    delivered          BIGINT NOT NULL DEFAULT 0,
    message            TEXT NOT NULL DEFAULT '',
    private_ip         TEXT,
    public_ip          TEXT,
    private_dns        TEXT,
    instance_type      TEXT,
    price_type         TEXT,
    launch_time        BIGINT,
    resource_id        TEXT,
    provider_api       TEXT,
    reclaim_notice     TEXT,
    reclaimed_at       BIGINT,
    return_request_id  TEXT REFERENCES hf_requests (request_id),
    return_sent_at     BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX hf_machines_by_request ON hf_machines (request_id);
CREATE INDEX hf_machines_by_return ON hf_machines (return_request_id);
CREATE INDEX hf_machines_by_name ON hf_machines (private_dns);
CREATE INDEX hf_machines_by_template ON hf_machines (template_id, state);
