"""PostgreSQL plumbing: connections (``db``), warm pooled ones (``warm``), the project's SQL
files (``sqlfiles``), pg_dump/pg_restore (``pgtools``), the COPY stall ``watchdog`` and the
bookkeeping schema (``support``, its one owner).

Imports only ``base`` and ``config``.
"""
