-- What applying a comparison's work tables would do to the live table: rows to write (updated
-- or inserted), rows deleted, the checksum's change (the fetched rows' hashes, less those of
-- the live rows they replace and of the rows deleted), and how many of the rows to write are
-- new (no live row had their key).
-- Template: {fetch}, {gone} work tables (sql/changes_fetch.sql, sql/changes_gone.sql).
SELECT (SELECT count(*) FROM {fetch}),
       (SELECT count(*) FROM {gone}),
       (SELECT coalesce(sum(pagila_h), 0) - coalesce(sum(pagila_old_h), 0) FROM {fetch})
       - (SELECT coalesce(sum(pagila_h), 0) FROM {gone}),
       (SELECT count(*) FROM {fetch} WHERE pagila_old_h IS NULL);
