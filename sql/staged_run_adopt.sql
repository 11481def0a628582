-- A run adopts an earlier run's staging copy: the plan, the committed units (each keeps the run
-- that copied it), the tables whose indexes were built on it and the staging schemas'
-- registration become the new run's.
-- Parameters: :old_run, :new_run.
UPDATE pagila_support.staged_runs SET run_id = %(new_run)s WHERE run_id = %(old_run)s;
UPDATE pagila_support.staged_units SET run_id = %(new_run)s WHERE run_id = %(old_run)s;
UPDATE pagila_support.replication_schemas SET run_id = %(new_run)s
WHERE run_id = %(old_run)s AND kind = 'stage';
UPDATE pagila_support.replication_steps SET run_id = %(new_run)s
WHERE run_id = %(old_run)s AND step LIKE 'indexes %%';
