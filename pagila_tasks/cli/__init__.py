"""Command-line entry points: ``pagila-submit`` here (``pagila-stack`` is in the devstack
distribution), and the guard that keeps Flower from starting without authentication.

The top of the import order, with ``tasks`` and ``app``: may import any part.
"""
