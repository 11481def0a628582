-- The enabled user triggers of the tables changes are applied to, with how each is enabled
-- (O origin, A always, R replica): turned off while the source's rows are written, then on
-- again exactly as they were (one the target's users turned off stays off).
-- Parameters: :tables (text[] of regclass names).
SELECT n.nspname, c.relname, tg.tgname, tg.tgenabled
FROM pg_catalog.pg_trigger tg
JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE tg.tgrelid = ANY (%(tables)s::regclass[])
  AND NOT tg.tgisinternal
  AND tg.tgenabled <> 'D'
ORDER BY 1, 2, 3;
