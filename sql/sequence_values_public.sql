-- Every sequence of the public schema with its current value (after a load, for the ledger).
-- Parameters: none.
SELECT sequencename, last_value
FROM pg_catalog.pg_sequences
WHERE schemaname = 'public'
ORDER BY sequencename;
