-- PostgreSQL twin of migrations/sqlite/0005.
ALTER TABLE circuit_state ADD COLUMN mode TEXT NOT NULL DEFAULT 'auto'
    CHECK (mode IN ('auto', 'forced_open', 'forced_closed'));
ALTER TABLE circuit_state ADD COLUMN mode_source TEXT;
ALTER TABLE circuit_state ADD COLUMN mode_reason TEXT;
ALTER TABLE circuit_state ADD COLUMN mode_set_at BIGINT;
