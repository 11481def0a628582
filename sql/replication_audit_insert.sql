-- One row per run: a second callback or errback for the same run changes nothing.
-- Parameters: :run_id, :started_at, :succeeded, :tables, :rows, :bytes, :error,
-- :detail (jsonb text), :switched_at, :switch_ms, :target_state.
INSERT INTO pagila_support.replication_audit
    (run_id, started_at, succeeded, tables, rows, bytes, error, detail, switched_at, switch_ms,
     target_state)
VALUES
    (%(run_id)s, %(started_at)s, %(succeeded)s, %(tables)s, %(rows)s, %(bytes)s, %(error)s,
     %(detail)s::jsonb, %(switched_at)s, %(switch_ms)s, %(target_state)s)
ON CONFLICT (run_id) DO NOTHING
RETURNING run_id;
