-- The foreign keys on tables of the given (staging) schemas (only those: a key elsewhere is not
-- the run's to drop), with the table each references:
-- what a resumed run drops where either table is copied again (a key pointing at a table would
-- stop it being emptied, or cascade its emptying into a table reused).
-- Parameters: :schemas (text[]).
SELECT nsp.nspname::text, rel.relname::text, con.conname::text,
       ref_nsp.nspname::text, ref.relname::text
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class rel ON rel.oid = con.conrelid
JOIN pg_catalog.pg_namespace nsp ON nsp.oid = rel.relnamespace
JOIN pg_catalog.pg_class ref ON ref.oid = con.confrelid
JOIN pg_catalog.pg_namespace ref_nsp ON ref_nsp.oid = ref.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0 AND nsp.nspname = ANY (%(schemas)s)
ORDER BY 1, 2, 3;
