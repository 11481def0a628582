-- The manifest: what the last successful load created in public (type, identity).
-- Parameters: none.
SELECT type, identity FROM pagila_support.load_manifest ORDER BY 1, 2;
