-- The newest staging copy a swap run built for exactly this set of schemas and did not switch
-- in: its plan, its age, the units committed there (name, the run that copied it, rows), and
-- whether it began finishing (a recorded step: post-data ran on it, so it cannot be adopted;
-- a table's indexes built beside the copies are not finishing).
-- Parameters: :schemas (text, the set as JSON).
SELECT r.run_id, r.fingerprint, r.units,
       extract(epoch FROM now() - r.created_at)::float8 AS age_s,
       EXISTS (SELECT FROM pagila_support.replication_steps s
               WHERE s.run_id = r.run_id AND s.step NOT LIKE 'indexes %%') AS finishing,
       coalesce((SELECT json_agg(json_build_array(u.unit, u.origin, u.rows))
                 FROM pagila_support.staged_units u WHERE u.run_id = r.run_id), '[]')::text
FROM pagila_support.staged_runs r
WHERE r.schemas = %(schemas)s
ORDER BY r.created_at DESC
LIMIT 1;
