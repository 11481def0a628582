-- The newest rows of the loader's ledger, for `pagila-submit history`.
-- Parameters: :limit.
SELECT id, loaded_at, run_id, succeeded, duration_s, actor_count, film_count, customer_count,
       rental_count, error
FROM pagila_support.pagila_load_audit
ORDER BY id DESC
LIMIT %(limit)s;
