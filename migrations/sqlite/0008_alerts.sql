-- Alerts raised by the rules (src/alerts): active while cleared_at is NULL, kept after that
-- as recent history until retention prunes them.
CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    rule          TEXT NOT NULL,
    condition     TEXT NOT NULL,
    strategy      TEXT,
    message       TEXT NOT NULL,
    raised_at     INTEGER NOT NULL,
    cleared_at    INTEGER,
    clear_message TEXT
);

CREATE INDEX alerts_active ON alerts (rule) WHERE cleared_at IS NULL;
CREATE INDEX alerts_by_clear ON alerts (cleared_at);

-- The rules set through PUT /api/v1/alerts/rules (one document); they replace the file's.
CREATE TABLE alert_rules (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    rules    TEXT NOT NULL,
    saved_at INTEGER NOT NULL
);
