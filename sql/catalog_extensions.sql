-- The extensions the replicated schemas need on the target: those living in them, and those
-- whose member objects (types, functions, operators, operator classes) an object of theirs
-- depends on (a column of type citext, a default calling uuid_generate_v4(), a trigram index).
-- plpgsql is always there. Parameters: :schemas (text[]).
WITH nsp AS (
    SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ANY (%(schemas)s)
), ours (classid, objid) AS (
    SELECT 'pg_catalog.pg_class'::regclass, c.oid FROM pg_catalog.pg_class c
        WHERE c.relnamespace IN (SELECT oid FROM nsp)
    UNION ALL SELECT 'pg_catalog.pg_proc'::regclass, p.oid FROM pg_catalog.pg_proc p
        WHERE p.pronamespace IN (SELECT oid FROM nsp)
    UNION ALL SELECT 'pg_catalog.pg_type'::regclass, t.oid FROM pg_catalog.pg_type t
        WHERE t.typnamespace IN (SELECT oid FROM nsp)
    UNION ALL SELECT 'pg_catalog.pg_constraint'::regclass, co.oid FROM pg_catalog.pg_constraint co
        WHERE co.connamespace IN (SELECT oid FROM nsp)
    UNION ALL SELECT 'pg_catalog.pg_attrdef'::regclass, ad.oid FROM pg_catalog.pg_attrdef ad
        JOIN pg_catalog.pg_class c ON c.oid = ad.adrelid WHERE c.relnamespace IN (SELECT oid FROM nsp)
    UNION ALL SELECT 'pg_catalog.pg_trigger'::regclass, tg.oid FROM pg_catalog.pg_trigger tg
        JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid WHERE c.relnamespace IN (SELECT oid FROM nsp)
    UNION ALL SELECT 'pg_catalog.pg_rewrite'::regclass, r.oid FROM pg_catalog.pg_rewrite r
        JOIN pg_catalog.pg_class c ON c.oid = r.ev_class WHERE c.relnamespace IN (SELECT oid FROM nsp)
), needed AS (
    SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extnamespace IN (SELECT oid FROM nsp)
    UNION
    SELECT m.refobjid
    FROM ours o
    JOIN pg_catalog.pg_depend d ON d.classid = o.classid AND d.objid = o.objid
    JOIN pg_catalog.pg_depend m ON m.classid = d.refclassid AND m.objid = d.refobjid
         AND m.deptype = 'e' AND m.refclassid = 'pg_catalog.pg_extension'::regclass
)
SELECT e.extname::text, n.nspname::text, e.extversion, e.extrelocatable
FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.oid IN (SELECT oid FROM needed) AND e.extname <> 'plpgsql'
ORDER BY e.oid;
