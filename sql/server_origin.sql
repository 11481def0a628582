-- Where a server's transaction counter comes from: its system identifier (a base backup's
-- copy shares it), its timeline (a restore to a point in time, or a promoted standby, starts a
-- new one; read from the current WAL file's name, or the last checkpoint's on a standby) and
-- the database's oid. Measures recorded with one origin say nothing about another.
SELECT s.system_identifier::text
       || ':' || CASE WHEN pg_catalog.pg_is_in_recovery()
                      THEN (SELECT c.timeline_id::text FROM pg_catalog.pg_control_checkpoint() AS c)
                      ELSE ('x' || substr(pg_catalog.pg_walfile_name(
                                pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int::text
                 END
       || ':' || (SELECT d.oid::text FROM pg_catalog.pg_database AS d
                  WHERE d.datname = pg_catalog.current_database())
FROM pg_catalog.pg_control_system() AS s;
