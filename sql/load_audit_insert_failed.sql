-- The failed row of a load run, written after its rollback, in a transaction of its own; at most
-- one row per run: nothing when the run already has one (its failure recorded twice, or a
-- commit that went through although its answer was lost).
-- Parameters: :schema_sha256, :data_sha256, :actor, :film, :customer, :rental,
-- :succeeded, :run_id, :duration, :error, :table_counts (jsonb text).
INSERT INTO pagila_support.pagila_load_audit
    (schema_sha256, data_sha256, actor_count, film_count, customer_count, rental_count,
     succeeded, run_id, duration_s, error, table_counts)
SELECT %(schema_sha256)s, %(data_sha256)s, %(actor)s, %(film)s, %(customer)s, %(rental)s,
       %(succeeded)s, %(run_id)s, %(duration)s, %(error)s, %(table_counts)s::jsonb
WHERE NOT EXISTS (
    SELECT FROM pagila_support.pagila_load_audit WHERE run_id = %(run_id)s
)
RETURNING id, loaded_at;
