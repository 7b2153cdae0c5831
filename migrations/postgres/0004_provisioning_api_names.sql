-- PostgreSQL twin of migrations/sqlite/0004 (the same statements).
-- Machines and requests name the provisioning API they were made with, one of RunInstances,
-- EC2Fleet, SpotFleet, ASG; the simulator no longer labels its machines with one. Earlier
-- versions stored 'simulated' there, which now reads as an unknown value.
UPDATE hf_machines SET provider_api = NULL WHERE provider_api = 'simulated';
UPDATE hf_requests SET provider_api = NULL WHERE provider_api = 'simulated';
