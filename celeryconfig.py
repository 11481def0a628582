"""Celery settings: a flat module of lowercase names, loaded by ``app.config_from_object``.

Values that depend on the deployment come from :mod:`pagila_tasks.config`, the one place the
environment is read.
"""

from celery.schedules import crontab
from kombu import Queue

from pagila_tasks.config import settings

_s = settings()

broker_url = _s.redis_url
result_backend = _s.redis_url
broker_connection_retry_on_startup = True

# JSON only: no pickle anywhere, so a message can never carry code or a connection.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# A task is acknowledged when it ends, and comes back if its worker dies mid-way.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
worker_cancel_long_running_tasks_on_connection_loss = True

# Flower sees every task, with its arguments and its start.
task_track_started = True
worker_send_task_events = True
task_send_sent_event = True
result_extended = True

# Time limits: the hard limit of any task < the Redis visibility timeout < result expiry, so
# a long task is never handed to a second worker while the first still runs, and a result
# outlives the message that produces it.
task_time_limit = _s.task_time_limit
task_soft_time_limit = max(_s.task_time_limit - 30, 5)
visibility_timeout = _s.visibility_timeout
broker_transport_options = {"visibility_timeout": visibility_timeout}
result_backend_transport_options = {"visibility_timeout": visibility_timeout}
result_expires = visibility_timeout + 7 * 24 * 3600

# Two queues: copies on one, control work (prepare, callbacks) on the other, so a long copy
# never starves the callback that finishes a run. Both are declared, so a worker started with
# no -Q (`celery -A pagila_tasks worker`) consumes both; `-Q copy` / `-Q control` split roles.
task_default_queue = "control"
task_queues = (
    Queue("control", routing_key="control"),
    Queue("copy", routing_key="copy"),
)
task_routes = {
    "pagila.copy_table": {"queue": "copy"},
    "pagila.build_table": {"queue": "copy"},
}
worker_hijack_root_logger = False

# Scheduled runs (Celery beat, `celery -A pagila_tasks beat`): PAGILA_SCHEDULE is a crontab
# expression or a number of seconds; PAGILA_SCHEDULE_JOB is run (load, then replicate) or
# replicate. Without a schedule, beat has nothing to send.
beat_schedule = {}
if _s.schedule:
    beat_schedule["pagila-scheduled"] = {
        "task": "pagila.scheduled",
        "schedule": (
            float(_s.schedule) if _s.schedule.isdigit() else crontab(*_s.schedule.split(" "))
        ),
        "kwargs": {"job": _s.schedule_job},
        "options": {"expires": 3600},
    }
