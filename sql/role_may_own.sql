-- Whether this login may hand objects to a role: it exists and we are a member of it.
-- Parameters: :role.
SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = %(role)s)
       AND pg_catalog.pg_has_role(current_user, %(role)s, 'MEMBER');
