-- What the last switch recorded as the project's own in the given live schemas.
-- Parameters: :schemas (text[]).
SELECT kind, key, value FROM pagila_support.replication_manifest
WHERE schema_name = ANY (%(schemas)s)
ORDER BY kind, key;
