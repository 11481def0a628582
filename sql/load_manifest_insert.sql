-- Record what a load created in public (in its transaction, with its success row).
-- Parameters: :types (text[]), :identities (text[], same length), :run_id (text).
INSERT INTO pagila_support.load_manifest (type, identity, run_id)
SELECT t.type, t.identity, %(run_id)s
FROM ROWS FROM (
    pg_catalog.unnest(%(types)s::text[]), pg_catalog.unnest(%(identities)s::text[])
) AS t (type, identity);
