-- PostgreSQL twin of migrations/sqlite/0007. The service assigns ids; replicas take them from
-- the sequence in blocks (src/store/events.rs), so ids stay unique and never go back.
CREATE TABLE events (
    id       BIGINT PRIMARY KEY,
    at       BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    strategy TEXT,
    detail   TEXT NOT NULL
);
CREATE SEQUENCE event_ids;

CREATE INDEX events_by_kind ON events (kind, id);
CREATE INDEX events_by_strategy ON events (strategy, id);
CREATE INDEX events_by_age ON events (at);
