"""The base: what every part shares, and nothing else: the exceptions (``errors``) and exact
PostgreSQL names (``names``). Pure: no I/O, no settings.

The bottom of the import order: imports no other part of the package.
"""
