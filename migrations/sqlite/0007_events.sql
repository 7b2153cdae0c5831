-- Events of the strategy layer and the HostFactory layer, kept for GET /api/v1/events and for
-- followers that reconnect with Last-Event-ID. The id is assigned by the service when the event
-- happens (it is the SSE id); AUTOINCREMENT keeps the highest id ever written in
-- sqlite_sequence, so ids never go back after the table was pruned empty.
CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    strategy TEXT,
    detail   TEXT NOT NULL
);

-- Filters by kind or strategy read in id order; retention deletes by age.
CREATE INDEX events_by_kind ON events (kind, id);
CREATE INDEX events_by_strategy ON events (strategy, id);
CREATE INDEX events_by_age ON events (at);
