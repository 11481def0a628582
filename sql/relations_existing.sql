-- Which of the given relation names exist (resolved as written; qualify them).
-- Parameters: :names (text array).
SELECT name
FROM pg_catalog.unnest(%(names)s::text[]) AS name
WHERE pg_catalog.to_regclass(name) IS NOT NULL;
