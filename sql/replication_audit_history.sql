-- The newest rows of the replication ledger, for `pagila-submit history`.
-- Parameters: :limit.
SELECT run_id, started_at, finished_at, succeeded, tables, rows, bytes, error, switched_at,
       switch_ms, target_state
FROM pagila_support.replication_audit
ORDER BY finished_at DESC
LIMIT %(limit)s;
