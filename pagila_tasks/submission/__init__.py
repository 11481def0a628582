"""What comes before a run starts: the preflight checks a worker answers for the submitter,
and Celery beat's scheduled runs.

Imports the parts below it: ``base``, ``config``, ``pg``, ``run``, ``replication``, ``load``.
"""
