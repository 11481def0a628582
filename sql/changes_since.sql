-- The rows the source wrote since the live copy was last proven equal to it (xmin at or past
-- that snapshot's xmin, whose age is {limit} in this transaction; a row older than it has a
-- greater age), with their row hashes: a refresh's first guess at what changed, which the
-- checksums must confirm (pagila_tasks.replication.changes). Read once: the rows that differ
-- are applied from what this sends.
-- Template: {columns} the copied columns; {hash} the row hash of t; {live} the table; {limit}
-- an integer; {fmt} text or binary.
COPY (SELECT {columns}, {hash}
      FROM ONLY {live} AS t
      WHERE pg_catalog.age(t.xmin) <= {limit})
TO STDOUT WITH (FORMAT {fmt});
