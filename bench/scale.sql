-- Pagila scaled by :scale, generated in SQL from the original rows (psql -v scale=N -f scale.sql).
-- Copies k = 1 .. scale-1 of inventory, rental and payment are added with every key shifted by
-- k * 100000 (the original keys are all below 100000): copy k of a rental points at copy k of
-- its inventory row, copy k of a payment at copy k of its rental, so every foreign key holds and
-- the unique (rental_date, inventory_id, customer_id) index stays unique. Dates are unchanged, so
-- each payment stays in its month partition. Customers, films, stores and staff are shared.
-- Idempotent: the rows of an earlier scaling (keys >= 100000) are removed first, so scale=1
-- gives back the loaded Pagila. Sequences are set to the new maxima.
-- Parameters: :scale (integer, 1 .. 20000).
\set ON_ERROR_STOP on
BEGIN;
-- Each deleted rental row is checked against payment.rental_id, which has no index: without this
-- one, removing an earlier x50 takes many minutes (a scan of payment per rental row).
CREATE INDEX bench_scale_payment_rental ON public.payment (rental_id);
DELETE FROM public.payment WHERE payment_id >= 100000;
DELETE FROM public.rental WHERE rental_id >= 100000;
DELETE FROM public.inventory WHERE inventory_id >= 100000;
DROP INDEX public.bench_scale_payment_rental;

INSERT INTO public.inventory (inventory_id, film_id, store_id, last_update)
SELECT i.inventory_id + k * 100000, i.film_id, i.store_id, i.last_update
FROM public.inventory AS i CROSS JOIN generate_series(1, :scale - 1) AS k
WHERE i.inventory_id < 100000
ORDER BY k, i.inventory_id;

INSERT INTO public.rental
       (rental_id, rental_date, inventory_id, customer_id, return_date, staff_id, last_update)
SELECT r.rental_id + k * 100000, r.rental_date, r.inventory_id + k * 100000, r.customer_id,
       r.return_date, r.staff_id, r.last_update
FROM public.rental AS r CROSS JOIN generate_series(1, :scale - 1) AS k
WHERE r.rental_id < 100000
ORDER BY k, r.rental_id;

INSERT INTO public.payment
       (payment_id, customer_id, staff_id, rental_id, amount, payment_date)
SELECT p.payment_id + k * 100000, p.customer_id, p.staff_id, p.rental_id + k * 100000, p.amount,
       p.payment_date
FROM public.payment AS p CROSS JOIN generate_series(1, :scale - 1) AS k
WHERE p.payment_id < 100000
ORDER BY k, p.payment_id;

SELECT pg_catalog.setval('public.inventory_inventory_id_seq', max(inventory_id)) FROM public.inventory;
SELECT pg_catalog.setval('public.rental_rental_id_seq', max(rental_id)) FROM public.rental;
SELECT pg_catalog.setval('public.payment_payment_id_seq', max(payment_id)) FROM public.payment;
COMMIT;

-- Compact what an earlier, larger scaling left behind, then freeze and analyze (autovacuum
-- would do the latter on a real server; the planner's row estimates decide the key-range splits).
VACUUM (FULL) public.inventory, public.rental, public.payment;
VACUUM (FREEZE, ANALYZE) public.inventory, public.rental, public.payment;
