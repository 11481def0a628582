"""Command-line entry points: ``pagila-submit`` here, ``pagila-stack`` in the stack package."""
