"""The unit tier: tests that need no server."""
