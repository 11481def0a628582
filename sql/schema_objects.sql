-- How many objects of someone's own the given schemas hold (relations, functions, types),
-- leaving out what extensions bring: what a reset or a switch would replace.
-- Parameters: :schemas (text[]).
WITH nsp AS (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ANY (%(schemas)s)),
ext AS (SELECT classid, objid FROM pg_catalog.pg_depend WHERE deptype = 'e')
SELECT (SELECT count(*) FROM pg_catalog.pg_class c
        WHERE c.relnamespace IN (SELECT oid FROM nsp)
          AND ('pg_catalog.pg_class'::regclass, c.oid) NOT IN (SELECT classid, objid FROM ext))
     + (SELECT count(*) FROM pg_catalog.pg_proc p
        WHERE p.pronamespace IN (SELECT oid FROM nsp)
          AND ('pg_catalog.pg_proc'::regclass, p.oid) NOT IN (SELECT classid, objid FROM ext))
     + (SELECT count(*) FROM pg_catalog.pg_type t
        WHERE t.typnamespace IN (SELECT oid FROM nsp) AND t.typrelid = 0 AND t.typcategory <> 'A'
          AND ('pg_catalog.pg_type'::regclass, t.oid) NOT IN (SELECT classid, objid FROM ext));
