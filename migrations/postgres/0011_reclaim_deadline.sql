-- PostgreSQL twin of migrations/sqlite/0011.
ALTER TABLE hf_machines ADD COLUMN reclaim_deadline BIGINT;
