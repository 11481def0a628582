-- What the metrics textfile reports of the replication ledger: how many runs and how many
-- failed, when the last success ended, and the last run (when it ended, how long it took since
-- its start, whether it succeeded, its rows and bytes). One row, also for an empty ledger.
-- Parameters: none. The ledger must exist.
SELECT counts.runs, counts.failed, counts.last_success_at,
       last.finished_at AS last_finished_at,
       extract(epoch FROM last.finished_at - last.started_at)::float8 AS last_duration_s,
       last.succeeded AS last_succeeded, last.rows AS last_rows, last.bytes AS last_bytes
FROM (SELECT count(*) AS runs,
             count(*) FILTER (WHERE NOT succeeded) AS failed,
             max(finished_at) FILTER (WHERE succeeded) AS last_success_at
      FROM pagila_support.replication_audit) AS counts
LEFT JOIN LATERAL (SELECT finished_at, started_at, succeeded, rows, bytes
                   FROM pagila_support.replication_audit
                   ORDER BY finished_at DESC, run_id DESC
                   LIMIT 1) AS last ON true;
