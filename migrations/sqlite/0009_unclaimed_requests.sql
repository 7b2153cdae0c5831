-- When the client that made an acquire request is known to hold its id: HostFactory's first
-- getRequestStatus naming it, or the creation of a request made through the operator route
-- (whose 202 the operator reads). An acquire request left unclaimed for
-- hostfactory.unclaimed_request_timeout_seconds of service uptime is cancelled and its
-- machines returned: its answer was lost (a crash between saving and answering).
ALTER TABLE hf_requests ADD COLUMN claimed_at INTEGER;   -- epoch ms

-- Requests stored before the rule existed are taken as claimed, so that an upgrade never
-- cancels them.
UPDATE hf_requests SET claimed_at = created_at;

-- The reconciler's look for unclaimed requests, every round; the WHERE is the query's.
CREATE INDEX hf_requests_unclaimed ON hf_requests (created_at)
    WHERE claimed_at IS NULL AND kind = 'acquire';
