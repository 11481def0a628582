-- Make the target's large objects the staged ones (in the switch's transaction): those the target
-- user owns are unlinked, the staged ones created with their source oids, the stage emptied.
-- A large object of another owner with a staged oid makes lo_from_bytea fail: nothing changes.
-- Parameters: none.
SELECT count(pg_catalog.lo_unlink(m.oid))
FROM pg_catalog.pg_largeobject_metadata m
WHERE m.lomowner = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user);
SELECT count(pg_catalog.lo_from_bytea(s.loid, s.data)) FROM pagila_support.large_object_stage s;
TRUNCATE pagila_support.large_object_stage;
