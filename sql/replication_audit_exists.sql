-- Whether a run already has its row in the replication ledger (a finished run's callback is a no-op).
-- Parameters: :run_id.
SELECT 1
FROM pagila_support.replication_audit
WHERE run_id = %(run_id)s;
