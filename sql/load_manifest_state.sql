-- What the source says about earlier loads: whether the manifest table exists and holds rows,
-- and whether a load ledger with a successful row exists (a load by an earlier version).
-- Parameters: none. Reads only (no table is created).
SELECT pg_catalog.to_regclass('pagila_support.load_manifest') IS NOT NULL,
       pg_catalog.to_regclass('pagila_support.pagila_load_audit') IS NOT NULL;
