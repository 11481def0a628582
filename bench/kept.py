"""The target-side objects of ``ours-kept``: what a replica's users build around it, counted.

Thirty objects a run must keep (:data:`BUILT`), made on the target after a first replica, as the
project's target role (the reader role alone is made as the superuser, :data:`READER`):

- 10 views in ``reporting`` over replicated tables, and 3 views over those views;
- 2 materialized views (over ``public.rental`` and ``public.payment``), a unique index each;
- 3 foreign keys to replicated tables, from 3 tables of ``reporting`` holding 3 rows each;
- 3 ``BEGIN ATOMIC`` functions reading replicated tables;
- 2 triggers on those tables executing ``public.last_updated()`` (a replicated function);
- 2 indexes added to ``public.rental`` and ``public.payment`` (partitioned: one index on each
  partition, attached to it);
- 2 comments (one on ``public.rental``, one on a view);
- 1 grant set: USAGE on schema ``public`` and SELECT on all its tables to the reader role.

:func:`count` counts them on the target by category, before the timed run and after it.
"""

from __future__ import annotations

from typing import Any

from bench.results import RunFailed
from bench.stack import BenchStack

SCHEMA = "reporting"
"""Where the objects live (dropped by :func:`bench.data.reset_target` with the rest)."""
READER = "bench_reader"
"""The role the grants go to (made once, idempotently, as the target's superuser)."""
EXPECTED = 30

MAKE_READER = f"DO $$ BEGIN CREATE ROLE {READER}; EXCEPTION WHEN duplicate_object THEN NULL; END $$"

BUILT = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE VIEW reporting.rentals AS
    SELECT rental_id, rental_date, inventory_id, customer_id, staff_id FROM public.rental;
CREATE VIEW reporting.payments AS
    SELECT payment_id, customer_id, rental_id, amount, payment_date FROM public.payment;
CREATE VIEW reporting.customers AS
    SELECT customer_id, store_id, first_name, last_name, email FROM public.customer;
CREATE VIEW reporting.films AS SELECT film_id, title, rating, length FROM public.film;
CREATE VIEW reporting.actors AS SELECT actor_id, first_name, last_name FROM public.actor;
CREATE VIEW reporting.stock AS SELECT inventory_id, film_id, store_id FROM public.inventory;
CREATE VIEW reporting.stores AS SELECT store_id, address_id FROM public.store;
CREATE VIEW reporting.staff_names AS SELECT staff_id, first_name, last_name FROM public.staff;
CREATE VIEW reporting.film_cast AS
    SELECT fa.film_id, a.actor_id, a.last_name
    FROM public.film_actor fa JOIN public.actor a USING (actor_id);
CREATE VIEW reporting.customer_addresses AS
    SELECT c.customer_id, a.address, a.phone
    FROM public.customer c JOIN public.address a USING (address_id);
CREATE VIEW reporting.rental_count AS SELECT count(*) AS n FROM reporting.rentals;
CREATE VIEW reporting.revenue AS SELECT sum(amount) AS total FROM reporting.payments;
CREATE VIEW reporting.customer_rentals AS
    SELECT c.customer_id, count(r.rental_id) AS n
    FROM reporting.customers c LEFT JOIN reporting.rentals r USING (customer_id)
    GROUP BY c.customer_id;
CREATE MATERIALIZED VIEW reporting.rentals_by_staff AS
    SELECT staff_id, count(*) AS n FROM public.rental GROUP BY staff_id;
CREATE UNIQUE INDEX rentals_by_staff_key ON reporting.rentals_by_staff (staff_id);
CREATE MATERIALIZED VIEW reporting.payments_by_month AS
    SELECT date_trunc('month', payment_date) AS month, count(*) AS n, sum(amount) AS total
    FROM public.payment GROUP BY 1;
CREATE UNIQUE INDEX payments_by_month_key ON reporting.payments_by_month (month);
CREATE TABLE reporting.rental_notes (
    id serial PRIMARY KEY,
    rental_id integer NOT NULL CONSTRAINT rental_notes_rental_fk REFERENCES public.rental,
    note text,
    last_update timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE reporting.customer_flags (
    id serial PRIMARY KEY,
    customer_id integer NOT NULL CONSTRAINT customer_flags_customer_fk REFERENCES public.customer,
    flag text,
    last_update timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE reporting.film_tags (
    id serial PRIMARY KEY,
    film_id integer NOT NULL CONSTRAINT film_tags_film_fk REFERENCES public.film,
    tag text
);
INSERT INTO reporting.rental_notes (rental_id, note)
    SELECT rental_id, 'note ' || rental_id FROM public.rental ORDER BY rental_id LIMIT 3;
INSERT INTO reporting.customer_flags (customer_id, flag)
    SELECT customer_id, 'vip' FROM public.customer ORDER BY customer_id LIMIT 3;
INSERT INTO reporting.film_tags (film_id, tag)
    SELECT film_id, 'classic' FROM public.film ORDER BY film_id LIMIT 3;
CREATE FUNCTION reporting.rental_total() RETURNS bigint LANGUAGE sql
    BEGIN ATOMIC SELECT count(*) FROM public.rental; END;
CREATE FUNCTION reporting.revenue_total() RETURNS numeric LANGUAGE sql
    BEGIN ATOMIC SELECT sum(amount) FROM public.payment; END;
CREATE FUNCTION reporting.customer_rental_count(c integer) RETURNS bigint LANGUAGE sql
    BEGIN ATOMIC SELECT count(*) FROM public.rental WHERE customer_id = c; END;
CREATE TRIGGER rental_notes_touch BEFORE UPDATE ON reporting.rental_notes
    FOR EACH ROW EXECUTE FUNCTION public.last_updated();
CREATE TRIGGER customer_flags_touch BEFORE UPDATE ON reporting.customer_flags
    FOR EACH ROW EXECUTE FUNCTION public.last_updated();
GRANT USAGE ON SCHEMA public TO {READER};
GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER};
CREATE INDEX bench_kept_rental_last_update ON public.rental (last_update);
CREATE INDEX bench_kept_payment_amount ON public.payment (amount);
COMMENT ON TABLE public.rental IS 'bench: commented on the target';
COMMENT ON VIEW reporting.rentals IS 'bench: an analyst''s view';
"""
"""The 30 objects (with their schema and the 3 tables holding the keys), in one transaction."""

COUNT = f"""
WITH rep AS (SELECT oid FROM pg_namespace WHERE nspname = '{SCHEMA}'),
rels AS (SELECT c.* FROM pg_class c JOIN rep ON c.relnamespace = rep.oid)
SELECT
  (SELECT count(*) FROM rels WHERE relkind = 'v'),
  (SELECT count(*) FROM rels WHERE relkind = 'm'),
  (SELECT count(*) FROM pg_index i JOIN rels m ON m.oid = i.indrelid AND m.relkind = 'm'
   WHERE i.indisunique AND i.indisvalid),
  (SELECT count(*) FROM pg_constraint k JOIN rels t ON t.oid = k.conrelid
   WHERE k.contype = 'f' AND (SELECT relnamespace FROM pg_class WHERE oid = k.confrelid)
       = 'public'::regnamespace AND k.convalidated),
  (SELECT count(*) FROM pg_proc p JOIN rep ON p.pronamespace = rep.oid),
  (SELECT count(*) FROM pg_trigger g JOIN rels t ON t.oid = g.tgrelid
   WHERE NOT g.tgisinternal AND g.tgfoid = to_regprocedure('public.last_updated()')),
  (SELECT count(*) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
   WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('i', 'I')
   AND c.relname LIKE 'bench\\_kept\\_%' AND i.indisvalid),
  (SELECT count(*) FROM (VALUES
     (obj_description(to_regclass('public.rental'), 'pg_class')),
     (obj_description(to_regclass('reporting.rentals'), 'pg_class'))) AS d(text)
   WHERE text LIKE 'bench: %'),
  (SELECT (has_schema_privilege('{READER}', 'public', 'USAGE')
           AND count(*) > 0
           AND bool_and(has_table_privilege('{READER}', c.oid, 'SELECT')))::int
   FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p'))
"""
CATEGORIES = (
    "views",
    "materialized views",
    "their unique indexes",
    "foreign keys",
    "functions",
    "triggers",
    "indexes on replicated tables",
    "comments",
    "grant sets",
)

WORKS = """
SELECT (SELECT count(*) FROM reporting.rentals), (SELECT n FROM reporting.rental_count),
       reporting.rental_total(), (SELECT sum(n) FROM reporting.rentals_by_staff)
"""
"""Four readings of the rental count through the kept objects: each must be the source's."""


def build(b: BenchStack) -> dict[str, int]:
    """The 30 objects on the target (which holds a replica); their count by category."""
    b.admin("target", MAKE_READER)
    with b.cursor("target") as cur:
        cur.execute(BUILT)
    return count(b)


def count(b: BenchStack) -> dict[str, int]:
    """The objects found on the target, by category (:data:`CATEGORIES`)."""
    with b.cursor("target") as cur:
        cur.execute(COUNT)
        row = cur.fetchone()
    return {name: int(n or 0) for name, n in zip(CATEGORIES, row, strict=True)}


def total(found: dict[str, int]) -> int:
    return sum(found.values())


def check(b: BenchStack, when: str) -> dict[str, Any]:
    """Fail the run unless all 30 objects are on the target (the indexes valid: an index on a
    partitioned table is valid only with one on every partition) and read the new copy's rows."""
    found = count(b)
    if total(found) != EXPECTED:
        raise RunFailed(f"ours-kept: {describe(found)} {when}, not {EXPECTED}")
    with b.cursor("target") as cur:
        cur.execute(WORKS)
        readings = [int(x) for x in cur.fetchone()]
    rentals = b.counts.get("rental")
    if any(x != rentals for x in readings):
        raise RunFailed(
            f"ours-kept: the kept objects read {readings} rentals {when}, not {rentals}"
        )
    return found


def describe(found: dict[str, int]) -> str:
    """``30 objects (13 views, 2 materialized views, ...)``."""
    parts = ", ".join(f"{n} {name}" for name, n in found.items())
    return f"{total(found)} objects ({parts})"
