"""The replication's phases, source to target: catalog, snapshot, schema, staging, copy,
keys, sequences, verification, what is kept, the switch, the callback and the errback.

Imports only ``base``, ``config``, ``pg`` and ``run``.
"""
