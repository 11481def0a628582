"""The load of Pagila into the source: finding the files, the streaming SQL parser, what a
load may reset, and the load phase itself.

Imports ``base``, ``config``, ``pg``, ``run`` and ``replication`` (for its ``catalog``).
"""
