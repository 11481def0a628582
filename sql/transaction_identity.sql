-- Which transaction and which user this session is in: taken when a load's transaction opens
-- and again just before its commit, which goes ahead only if both answers are unchanged.
-- Parameters: none.
SELECT pg_catalog.pg_current_xact_id()::text, current_user, session_user;
