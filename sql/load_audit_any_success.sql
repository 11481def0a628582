-- Whether any load succeeded on this source (by any version of the project).
-- Parameters: none.
SELECT EXISTS (SELECT 1 FROM pagila_support.pagila_load_audit WHERE succeeded);
