-- An operator can force a circuit open or closed, or hand it back to its rules ('auto'); who
-- did it (source), why and when are kept with the state, so the choice survives restarts.
ALTER TABLE circuit_state ADD COLUMN mode TEXT NOT NULL DEFAULT 'auto'
    CHECK (mode IN ('auto', 'forced_open', 'forced_closed'));
ALTER TABLE circuit_state ADD COLUMN mode_source TEXT;
ALTER TABLE circuit_state ADD COLUMN mode_reason TEXT;
ALTER TABLE circuit_state ADD COLUMN mode_set_at INTEGER;  -- epoch ms
