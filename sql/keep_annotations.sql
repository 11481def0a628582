-- What people added to objects, as statements that add it again: privileges (GRANT, after a
-- REVOKE of PUBLIC's defaults), default privileges of a schema, an owner other than the
-- session user (only one the session user may give objects to), comments and security labels.
-- For the objects of the given schemas and for the given objects elsewhere ("classid:objid").
-- Each row: kind (grant, owner, comment, label), the target as COMMENT ON / GRANT ON name it,
-- the statement, the comment or label text, and whether the object is in the schemas.
-- Run with search_path = pg_catalog, so every name comes back qualified.
-- Parameters: :schemas (text[]); :units (text[]).
WITH s AS (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ANY (%(schemas)s)),
ext AS (SELECT classid, objid FROM pg_catalog.pg_depend WHERE deptype = 'e'),
owned_seq AS (
    SELECT objid FROM pg_catalog.pg_depend
    WHERE classid = 'pg_catalog.pg_class'::regclass AND refclassid = 'pg_catalog.pg_class'::regclass
      AND deptype IN ('a', 'i') AND refobjsubid > 0
),
obj (classid, objid, inside, target, grant_on, owner_kind, owner, acl, nsp) AS (
    SELECT 'pg_catalog.pg_class'::regclass, c.oid, c.relnamespace IN (SELECT oid FROM s),
           CASE c.relkind WHEN 'v' THEN 'VIEW ' WHEN 'm' THEN 'MATERIALIZED VIEW '
                          WHEN 'S' THEN 'SEQUENCE ' WHEN 'f' THEN 'FOREIGN TABLE '
                          WHEN 'i' THEN 'INDEX ' WHEN 'I' THEN 'INDEX ' WHEN 'c' THEN 'TYPE '
                          ELSE 'TABLE ' END || c.oid::regclass::text,
           CASE c.relkind WHEN 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || c.oid::regclass::text,
           CASE WHEN c.relkind IN ('r', 'p') THEN 'TABLE' WHEN c.relkind = 'v' THEN 'VIEW'
                WHEN c.relkind = 'm' THEN 'MATERIALIZED VIEW' WHEN c.relkind = 'f' THEN 'FOREIGN TABLE'
                WHEN c.relkind = 'S' AND c.oid NOT IN (SELECT objid FROM owned_seq) THEN 'SEQUENCE' END,
           c.relowner, c.relacl, c.relnamespace
    FROM pg_catalog.pg_class c
    WHERE (c.relnamespace IN (SELECT oid FROM s)
           OR ('pg_catalog.pg_class'::regclass::oid || ':' || c.oid) = ANY (%(units)s))
      AND ('pg_catalog.pg_class'::regclass, c.oid) NOT IN (SELECT classid, objid FROM ext)
    UNION ALL
    SELECT 'pg_catalog.pg_proc'::regclass, p.oid, p.pronamespace IN (SELECT oid FROM s),
           'ROUTINE ' || p.oid::regprocedure::text, 'ROUTINE ' || p.oid::regprocedure::text,
           'ROUTINE', p.proowner, p.proacl, p.pronamespace
    FROM pg_catalog.pg_proc p
    WHERE (p.pronamespace IN (SELECT oid FROM s)
           OR ('pg_catalog.pg_proc'::regclass::oid || ':' || p.oid) = ANY (%(units)s))
      AND ('pg_catalog.pg_proc'::regclass, p.oid) NOT IN (SELECT classid, objid FROM ext)
    UNION ALL
    SELECT 'pg_catalog.pg_type'::regclass, t.oid, true,
           CASE WHEN t.typtype = 'd' THEN 'DOMAIN ' ELSE 'TYPE ' END || t.oid::regtype::text,
           'TYPE ' || t.oid::regtype::text,
           CASE WHEN t.typtype = 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typowner, t.typacl, t.typnamespace
    FROM pg_catalog.pg_type t
    WHERE t.typnamespace IN (SELECT oid FROM s) AND t.typcategory <> 'A' AND t.typrelid = 0
      AND ('pg_catalog.pg_type'::regclass, t.oid) NOT IN (SELECT classid, objid FROM ext)
    UNION ALL
    SELECT 'pg_catalog.pg_namespace'::regclass, n.oid, true, 'SCHEMA ' || pg_catalog.quote_ident(n.nspname),
           'SCHEMA ' || pg_catalog.quote_ident(n.nspname), 'SCHEMA', n.nspowner, n.nspacl, n.oid
    FROM pg_catalog.pg_namespace n WHERE n.oid IN (SELECT oid FROM s)
),
sub (classid, objid, objsubid, inside, target, nsp, unit) AS (
    SELECT classid, objid, 0, inside, target, nsp, classid::oid || ':' || objid FROM obj
    WHERE classid <> 'pg_catalog.pg_namespace'::regclass
    UNION ALL
    SELECT 'pg_catalog.pg_class'::regclass, a.attrelid, a.attnum, obj.inside,
           'COLUMN ' || a.attrelid::regclass::text || '.' || pg_catalog.quote_ident(a.attname), obj.nsp, obj.classid::oid || ':' || obj.objid
    FROM obj JOIN pg_catalog.pg_attribute a ON obj.classid = 'pg_catalog.pg_class'::regclass
         AND a.attrelid = obj.objid AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'pg_catalog.pg_constraint'::regclass, k.oid, 0, obj.inside,
           pg_catalog.format('CONSTRAINT %%I ON %%s', k.conname, k.conrelid::regclass), obj.nsp, obj.classid::oid || ':' || obj.objid
    FROM obj JOIN pg_catalog.pg_constraint k ON obj.classid = 'pg_catalog.pg_class'::regclass
         AND k.conrelid = obj.objid
    UNION ALL
    SELECT 'pg_catalog.pg_trigger'::regclass, t.oid, 0, obj.inside,
           pg_catalog.format('TRIGGER %%I ON %%s', t.tgname, t.tgrelid::regclass), obj.nsp, obj.classid::oid || ':' || obj.objid
    FROM obj JOIN pg_catalog.pg_trigger t ON obj.classid = 'pg_catalog.pg_class'::regclass
         AND t.tgrelid = obj.objid AND NOT t.tgisinternal
    UNION ALL
    SELECT 'pg_catalog.pg_policy'::regclass, p.oid, 0, obj.inside,
           pg_catalog.format('POLICY %%I ON %%s', p.polname, p.polrelid::regclass), obj.nsp, obj.classid::oid || ':' || obj.objid
    FROM obj JOIN pg_catalog.pg_policy p ON obj.classid = 'pg_catalog.pg_class'::regclass
         AND p.polrelid = obj.objid
)
, rows (kind, target, statement, value, inside, nsp, unit) AS (
SELECT 'grant' AS kind, obj.target, pg_catalog.format('REVOKE ALL ON %%s FROM PUBLIC', obj.grant_on),
       NULL::text AS value, obj.inside, obj.nsp, obj.classid::oid || ':' || obj.objid
FROM obj WHERE obj.acl IS NOT NULL AND obj.classid <> 'pg_catalog.pg_class'::regclass
UNION ALL
SELECT 'grant', obj.target,
       pg_catalog.format('GRANT %%s ON %%s TO %%s%%s',
              pg_catalog.string_agg(g.privilege_type, ', ' ORDER BY g.privilege_type), obj.grant_on,
              CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
              CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END),
       NULL, obj.inside, obj.nsp, obj.classid::oid || ':' || obj.objid
FROM obj CROSS JOIN LATERAL pg_catalog.aclexplode(obj.acl) g
WHERE obj.acl IS NOT NULL AND g.grantee <> obj.owner
GROUP BY obj.classid, obj.objid, obj.target, obj.grant_on, g.grantee, g.is_grantable, obj.inside, obj.nsp
UNION ALL
SELECT 'grant', 'COLUMN ' || a.attrelid::regclass::text || '.' || pg_catalog.quote_ident(a.attname),
       pg_catalog.format('GRANT %%s (%%I) ON TABLE %%s TO %%s%%s',
              pg_catalog.string_agg(g.privilege_type, ', ' ORDER BY g.privilege_type), a.attname,
              a.attrelid::regclass,
              CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
              CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END),
       NULL, obj.inside, obj.nsp, obj.classid::oid || ':' || obj.objid
FROM obj JOIN pg_catalog.pg_attribute a ON obj.classid = 'pg_catalog.pg_class'::regclass
     AND a.attrelid = obj.objid AND a.attnum > 0 AND a.attacl IS NOT NULL
CROSS JOIN LATERAL pg_catalog.aclexplode(a.attacl) g
GROUP BY obj.classid, obj.objid, a.attrelid, a.attname, g.grantee, g.is_grantable, obj.inside, obj.nsp
UNION ALL
SELECT 'grant', 'DEFAULT PRIVILEGES IN SCHEMA ' || pg_catalog.quote_ident(n.nspname),
       pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE %%I IN SCHEMA %%I GRANT %%s ON %%s TO %%s%%s',
              pg_catalog.pg_get_userbyid(d.defaclrole), n.nspname, g.privilege_type,
              CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES'
                   WHEN 'f' THEN 'ROUTINES' WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END,
              CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
              CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END),
       NULL, true, n.oid, NULL
FROM pg_catalog.pg_default_acl d JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace
CROSS JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) g
WHERE n.oid IN (SELECT oid FROM s) AND pg_catalog.pg_has_role(d.defaclrole, 'MEMBER')
UNION ALL
SELECT CASE WHEN pg_catalog.pg_has_role(obj.owner, 'MEMBER') THEN 'owner' ELSE 'owner-lost' END,
       obj.target,
       pg_catalog.format('ALTER %%s %%s OWNER TO %%I', obj.owner_kind,
                         pg_catalog.substr(obj.target, pg_catalog.length(obj.owner_kind) + 2),
                         pg_catalog.pg_get_userbyid(obj.owner)),
       pg_catalog.pg_get_userbyid(obj.owner), obj.inside, obj.nsp, obj.classid::oid || ':' || obj.objid
FROM obj
WHERE obj.owner_kind IS NOT NULL AND obj.owner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
UNION ALL
SELECT 'comment', sub.target, pg_catalog.format('COMMENT ON %%s IS %%L', sub.target, d.description),
       d.description, sub.inside, sub.nsp, sub.unit
FROM sub JOIN pg_catalog.pg_description d
     ON d.classoid = sub.classid AND d.objoid = sub.objid AND d.objsubid = sub.objsubid
UNION ALL
SELECT 'label', sub.target,
       pg_catalog.format('SECURITY LABEL FOR %%I ON %%s IS %%L', l.provider, sub.target, l.label),
       l.provider || ':' || l.label, sub.inside, sub.nsp, sub.unit
FROM sub JOIN pg_catalog.pg_seclabel l
     ON l.classoid = sub.classid AND l.objoid = sub.objid AND l.objsubid = sub.objsubid
)
SELECT rows.kind, rows.target, rows.statement, rows.value, rows.inside, n.nspname, rows.unit
FROM rows JOIN pg_catalog.pg_namespace n ON n.oid = rows.nsp
ORDER BY rows.inside DESC, rows.kind, rows.target, rows.statement NOT LIKE 'REVOKE %%', rows.statement;
