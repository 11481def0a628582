"""The project's SQL, installed as package data ``pagila_tasks.sql`` (see pyproject.toml).

This file makes the folder a regular package: setuptools' editable finder maps a package to a
folder elsewhere only when it has an ``__init__.py``.
"""
