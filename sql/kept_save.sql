-- A run's plan for what the target's users built, kept until the run switched or put it back.
-- Parameters: :run_id, :plan (JSON text).
INSERT INTO pagila_support.kept_objects (run_id, plan) VALUES (%(run_id)s, %(plan)s)
ON CONFLICT (run_id) DO UPDATE SET plan = EXCLUDED.plan, created_at = now();
