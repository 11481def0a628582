-- The plans of other runs still kept on the target (runs that ended without switching).
-- Parameters: :run_id (the run asking, left out).
SELECT run_id, plan FROM pagila_support.kept_objects
WHERE run_id <> %(run_id)s
ORDER BY created_at;
