-- The tables the last successful replication verified (its ledger row's detail), for a target
-- an earlier version of the project replicated before schemas were registered.
-- Parameters: none.
SELECT jsonb_array_elements(detail::jsonb) ->> 'table'
FROM (SELECT detail FROM pagila_support.replication_audit
      WHERE succeeded ORDER BY finished_at DESC NULLS LAST LIMIT 1) AS last;
