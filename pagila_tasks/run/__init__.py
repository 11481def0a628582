"""A run as such, whatever it does: its record in Redis, the plan of its units, the run lock,
the guard tasks check their message with, and how a run starts and ends.

Imports only ``base``, ``config`` and ``pg``.
"""
