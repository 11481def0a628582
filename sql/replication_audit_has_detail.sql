-- Whether the replication ledger has its detail column (a ledger an early version wrote has not).
-- Parameters: none. The ledger must exist.
SELECT count(*) > 0 FROM pg_catalog.pg_attribute
WHERE attrelid = 'pagila_support.replication_audit'::regclass
  AND attname = 'detail' AND NOT attisdropped;
