-- PostgreSQL twin of migrations/sqlite/0003.
CREATE INDEX hf_machines_tracked ON hf_machines (strategy)
    WHERE state != 'terminated' AND failed = 0;
CREATE INDEX hf_machines_to_terminate ON hf_machines (strategy)
    WHERE failed = 1 AND return_sent_at IS NULL AND state != 'terminated';

CREATE INDEX hf_requests_by_age ON hf_requests (kind, updated_at);
CREATE INDEX health_history_by_age ON health_history (at);
CREATE INDEX sim_instances_terminated ON sim_instances (terminating_at)
    WHERE terminating_at IS NOT NULL;
