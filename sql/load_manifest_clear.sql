-- Empty the manifest (in a load's transaction, before it records what it created).
-- Parameters: none.
DELETE FROM pagila_support.load_manifest;
