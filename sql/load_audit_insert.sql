-- One row of the loader's ledger; loaded_at is the clock time of the insert, not the start of
-- the load's transaction (the success row is inserted in that transaction, just before commit).
-- Parameters: :schema_sha256, :data_sha256, :actor, :film, :customer, :rental,
-- :succeeded, :run_id, :duration, :error, :table_counts (jsonb text).
INSERT INTO pagila_support.pagila_load_audit
    (loaded_at, schema_sha256, data_sha256, actor_count, film_count, customer_count,
     rental_count, succeeded, run_id, duration_s, error, table_counts)
VALUES
    (clock_timestamp(), %(schema_sha256)s, %(data_sha256)s, %(actor)s, %(film)s,
     %(customer)s, %(rental)s, %(succeeded)s, %(run_id)s, %(duration)s, %(error)s,
     %(table_counts)s::jsonb)
RETURNING id, loaded_at;
