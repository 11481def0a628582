-- Every object in one schema, as pg_identify_object names it (type, identity): relations,
-- routines, types (not the row type of a relation nor an array type made with a type),
-- constraints (not the NOT NULL ones PostgreSQL 18 catalogs: part of their column), operators
-- and their classes and families, collations, conversions, text search objects, extended
-- statistics, extensions, and the triggers, rules and policies on the schema's tables. What a
-- load's manifest records, and what the reset check compares with it.
-- Parameters: :schema (an exact schema name).
WITH ns AS (
    SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s
), objects (classid, objid) AS (
    SELECT 'pg_catalog.pg_class'::regclass, c.oid FROM pg_catalog.pg_class c, ns
    WHERE c.relnamespace = ns.oid
    UNION ALL
    SELECT 'pg_catalog.pg_proc'::regclass, p.oid FROM pg_catalog.pg_proc p, ns
    WHERE p.pronamespace = ns.oid
    UNION ALL
    SELECT 'pg_catalog.pg_type'::regclass, t.oid FROM pg_catalog.pg_type t, ns
    WHERE t.typnamespace = ns.oid AND t.typrelid = 0
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type e WHERE e.typarray = t.oid)
    UNION ALL
    SELECT 'pg_catalog.pg_constraint'::regclass, k.oid FROM pg_catalog.pg_constraint k, ns
    WHERE k.connamespace = ns.oid AND k.contype <> 'n'
    UNION ALL
    SELECT 'pg_catalog.pg_operator'::regclass, o.oid FROM pg_catalog.pg_operator o, ns
    WHERE o.oprnamespace = ns.oid
    UNION ALL
    SELECT 'pg_catalog.pg_opclass'::regclass, o.oid FROM pg_catalog.pg_opclass o, ns
    WHERE o.opcnamespace = ns.oid
    UNION ALL
    SELECT 'pg_catalog.pg_opfamily'::regclass, o.oid FROM pg_catalog.pg_opfamily o, ns
    WHERE o.opfnamespace = ns.oid
    UNION ALL
    SELECT 'pg_catalog.pg_collation'::regclass, o.oid FROM pg_catalog.pg_collation o, ns
    WHERE o.collnamespace = ns.oid
    UNION ALL
    SELECT 'pg_catalog.pg_conversion'::regclass, o.oid FROM pg_catalog.pg_conversion o, ns
    WHERE o.connamespace = ns.oid
    UNION ALL
    SELECT 'pg_catalog.pg_ts_config'::regclass, o.oid FROM pg_catalog.pg_ts_config o, ns
    WHERE o.cfgnamespace = ns.oid
    UNION ALL
    SELECT 'pg_catalog.pg_ts_dict'::regclass, o.oid FROM pg_catalog.pg_ts_dict o, ns
    WHERE o.dictnamespace = ns.oid
    UNION ALL
    SELECT 'pg_catalog.pg_ts_parser'::regclass, o.oid FROM pg_catalog.pg_ts_parser o, ns
    WHERE o.prsnamespace = ns.oid
    UNION ALL
    SELECT 'pg_catalog.pg_ts_template'::regclass, o.oid FROM pg_catalog.pg_ts_template o, ns
    WHERE o.tmplnamespace = ns.oid
    UNION ALL
    SELECT 'pg_catalog.pg_statistic_ext'::regclass, o.oid FROM pg_catalog.pg_statistic_ext o, ns
    WHERE o.stxnamespace = ns.oid
    UNION ALL
    SELECT 'pg_catalog.pg_extension'::regclass, o.oid FROM pg_catalog.pg_extension o, ns
    WHERE o.extnamespace = ns.oid
    UNION ALL
    SELECT 'pg_catalog.pg_trigger'::regclass, g.oid
    FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid, ns
    WHERE c.relnamespace = ns.oid AND NOT g.tgisinternal
    UNION ALL
    SELECT 'pg_catalog.pg_rewrite'::regclass, r.oid
    FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class, ns
    WHERE c.relnamespace = ns.oid AND r.rulename <> '_RETURN'
    UNION ALL
    SELECT 'pg_catalog.pg_policy'::regclass, p.oid
    FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid, ns
    WHERE c.relnamespace = ns.oid
)
SELECT DISTINCT o.type, o.identity
FROM objects, LATERAL pg_catalog.pg_identify_object(objects.classid, objects.objid, 0) AS o
ORDER BY 1, 2;
