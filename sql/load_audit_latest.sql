-- The newest ledger row for one pair of file fingerprints: a load is skipped only when it succeeded.
-- Parameters: :schema_sha256, :data_sha256.
SELECT id, loaded_at, succeeded, run_id
FROM pagila_support.pagila_load_audit
WHERE schema_sha256 = %(schema_sha256)s AND data_sha256 = %(data_sha256)s
ORDER BY id DESC
LIMIT 1;
