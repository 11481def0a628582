-- A run's row in the replication ledger (whether it ended, and what it left on the target).
-- Parameters: :run_id.
SELECT succeeded, target_state, switched_at, switch_ms, error
FROM pagila_support.replication_audit
WHERE run_id = %(run_id)s;
