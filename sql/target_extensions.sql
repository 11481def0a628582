-- What the target offers for the extensions a run needs: installed (where, version, owner,
-- relocatable), available (default version, trusted: a database owner may create it).
-- Parameters: :names (text[]).
SELECT wanted.name,
       n.nspname::text AS installed_in,
       e.extrelocatable,
       pg_catalog.pg_has_role(current_user, e.extowner, 'USAGE') AS owned,
       a.default_version IS NOT NULL AS available,
       coalesce((SELECT v.trusted FROM pg_catalog.pg_available_extension_versions v
                 WHERE v.name = a.name AND v.version = a.default_version), false) AS trusted,
       (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) AS superuser,
       ARRAY(SELECT v.version FROM pg_catalog.pg_available_extension_versions v
             WHERE v.name = a.name) AS versions
FROM unnest(%(names)s::text[]) AS wanted(name)
LEFT JOIN pg_catalog.pg_available_extensions a ON a.name = wanted.name
LEFT JOIN pg_catalog.pg_extension e ON e.extname = wanted.name
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace;
