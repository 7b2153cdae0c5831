-- Strategies registered through the config file or the API, with their full definition.
CREATE TABLE strategies (
    name        TEXT PRIMARY KEY NOT NULL,
    spec        TEXT NOT NULL,              -- StrategySpec as JSON
    source      TEXT NOT NULL CHECK (source IN ('config', 'api')),
    seq         INTEGER NOT NULL,           -- registration order
    created_at  INTEGER NOT NULL,           -- epoch ms
    updated_at  INTEGER NOT NULL
);

-- Run-time overrides of the file's strategy settings (PUT /providers/configuration).
CREATE TABLE strategy_settings (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    overrides   TEXT NOT NULL,              -- JSON object, only the fields set at run time
    updated_at  INTEGER NOT NULL
);

-- Last known health per strategy.
CREATE TABLE strategy_health (
    strategy          TEXT PRIMARY KEY NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('healthy', 'unhealthy', 'unknown')),
    status_message    TEXT,
    error_details     TEXT,                 -- JSON
    source            TEXT NOT NULL,
    checked_at        INTEGER,
    response_time_ms  REAL
);

-- Health changes, newest last.
CREATE TABLE health_history (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    strategy        TEXT NOT NULL,
    state           TEXT NOT NULL,
    status_message  TEXT,
    source          TEXT NOT NULL,
    at              INTEGER NOT NULL
);
CREATE INDEX health_history_by_strategy ON health_history (strategy, at);

-- Circuit breaker state with its transition times.
CREATE TABLE circuit_state (
    strategy              TEXT PRIMARY KEY NOT NULL,
    state                 TEXT NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    consecutive_failures  INTEGER NOT NULL,
    opened_at             INTEGER,
    last_transition_at    INTEGER,
    last_reason           TEXT
);

-- Operation metrics in one-minute buckets per strategy and operation type.
CREATE TABLE metric_buckets (
    strategy      TEXT NOT NULL,
    operation     TEXT NOT NULL,
    minute        INTEGER NOT NULL,         -- epoch minutes
    count         INTEGER NOT NULL,
    successes     INTEGER NOT NULL,
    failures      INTEGER NOT NULL,
    total_ms      REAL NOT NULL,
    max_ms        REAL NOT NULL,
    histogram     TEXT NOT NULL,            -- JSON array of counts per latency bound
    error_codes   TEXT NOT NULL,            -- JSON object code -> count
    last_error    TEXT,                     -- JSON {code, message, at}
    PRIMARY KEY (strategy, operation, minute)
);
CREATE INDEX metric_buckets_by_minute ON metric_buckets (minute);

-- Instances of the simulated provider. State is derived from the timestamps.
CREATE TABLE sim_instances (
    instance_id     TEXT PRIMARY KEY NOT NULL,
    strategy        TEXT NOT NULL,
    template_id     TEXT NOT NULL,
    instance_type   TEXT NOT NULL,
    request_id      TEXT,
    tags            TEXT NOT NULL,          -- JSON object
    private_ip      TEXT NOT NULL,
    launched_at     INTEGER NOT NULL,       -- epoch ms
    boot_ms         INTEGER NOT NULL,
    terminating_at  INTEGER,                -- epoch ms, set by TERMINATE_INSTANCES
    shutdown_ms     INTEGER NOT NULL,
    reclaimed       INTEGER NOT NULL DEFAULT 0  -- 1 when the "cloud" took it back
);
CREATE INDEX sim_instances_by_strategy ON sim_instances (strategy, terminating_at);
