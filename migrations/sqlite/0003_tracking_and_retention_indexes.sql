-- Every reconciler round reads the machines it tracks (neither terminated nor failed) and the
-- failed machines whose termination is not accepted yet. These partial indexes hold only those
-- rows, so a round no longer scans every machine ever made. SQLite uses a partial index only
-- when the query's WHERE contains the index's terms as written: the queries in
-- src/store/hostfactory.rs use these exact terms (a test checks the plans).
CREATE INDEX hf_machines_tracked ON hf_machines (strategy)
    WHERE state != 'terminated' AND failed = 0;
CREATE INDEX hf_machines_to_terminate ON hf_machines (strategy)
    WHERE failed = 1 AND return_sent_at IS NULL AND state != 'terminated';

-- Retention: finished requests by age, health history by age, simulated instances by the time
-- they were terminated.
CREATE INDEX hf_requests_by_age ON hf_requests (kind, updated_at);
CREATE INDEX health_history_by_age ON health_history (at);
CREATE INDEX sim_instances_terminated ON sim_instances (terminating_at)
    WHERE terminating_at IS NOT NULL;
