-- Record the live schemas a run switched in (or replaced in place) as the project's.
-- Parameters: :schemas (text[]), :run_id (text).
INSERT INTO pagila_support.replication_live (name, run_id)
SELECT unnest(%(schemas)s::text[]), %(run_id)s
ON CONFLICT (name) DO UPDATE SET run_id = EXCLUDED.run_id, switched_at = now();
