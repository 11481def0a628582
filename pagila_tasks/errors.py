"""The project's exceptions: plain classes, each naming what went wrong and where."""

from __future__ import annotations


class PagilaError(Exception):
    """Base of every error the project raises on purpose."""


class ConfigError(PagilaError):
    """A configuration variable is missing or malformed; names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable} {problem}")


class InputError(PagilaError):
    """A Pagila file is unusable; the message names the file and the line."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {problem}")


class LockHeld(PagilaError):
    """Another run holds the run lock."""

    def __init__(self, holder: dict[str, str]) -> None:
        self.holder = holder
        super().__init__(
            f"run {holder.get('run_id', '?')} ({holder.get('kind', '?')}) holds the lock "
            f"since {holder.get('since', '?')}"
        )


class LockLost(PagilaError):
    """This run no longer holds the lock (it expired and may belong to another run)."""


class UsageError(PagilaError):
    """Bad input to a command, refused before any work starts."""


class ReplicationError(PagilaError):
    """A replication phase failed; the message names the table or phase."""


class SnapshotLost(ReplicationError):
    """The exported snapshot is gone (its holder died); the run cannot go on consistently."""


class PoisonMessage(ReplicationError):
    """A unit was delivered more often than any retry policy allows (its worker keeps dying)."""
