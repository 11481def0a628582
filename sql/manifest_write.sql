-- Replace what the project owns in the given live schemas (in the switch's transaction).
-- Parameters: :schemas (text[]); :schema_names, :kinds, :keys, :values (text[], one per row).
DELETE FROM pagila_support.replication_manifest WHERE schema_name = ANY (%(schemas)s);
INSERT INTO pagila_support.replication_manifest (schema_name, kind, key, value)
SELECT * FROM unnest(%(schema_names)s::text[], %(kinds)s::text[], %(keys)s::text[], %(values)s::text[])
ON CONFLICT (kind, key) DO UPDATE SET schema_name = EXCLUDED.schema_name, value = EXCLUDED.value;
