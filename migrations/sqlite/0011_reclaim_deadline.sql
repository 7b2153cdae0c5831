-- When the cloud said it takes a machine back (a spot two-minute warning: the spot request's
-- marked-for-* status time, or the interruption event's time, plus 120 s), epoch ms.
-- getReturnRequests' gracePeriod counts down to it; NULL: no deadline was given, and the
-- grace period counts from when the reclaim was noticed.
ALTER TABLE hf_machines ADD COLUMN reclaim_deadline INTEGER;
