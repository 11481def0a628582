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


class FinalError(PagilaError):
    """An error no retry can fix (bad credentials, bad SQL, a missing object, a broken
    constraint): the task fails at once instead of waiting out every retry."""


class ExtensionError(FinalError):
    """The target cannot have an extension the replicated schemas need; names what to run."""


class Refused(FinalError):
    """A task message that does not match what the submitter recorded: nothing was touched."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason if reason.startswith("refused") else f"refused: {reason}")


FINAL_SQLSTATE_CLASSES = {
    "28": "invalid authorization",
    "42": "syntax error or access rule violation (undefined object, privilege)",
    "23": "integrity constraint violation",
    "3D": "invalid catalog name (no such database)",
    "3F": "invalid schema name",
}
"""SQLSTATE classes that a retry cannot fix. Every other class is retried with backoff: above
all 08 (connection), 57 (operator intervention: admin shutdown, statement timeout), 40
(serialization failure, deadlock), 53 (insufficient resources), 55 (lock not available)."""

_FINAL_CONNECT_WORDS = (
    "password authentication failed",
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",  # database or role
    "password is required",
    "no password supplied",
    "invalid connection option",
    "invalid URI",
    "invalid dsn",
)
"""A connection that never opened has no SQLSTATE in psycopg2: libpq's words tell these apart
from a server that is merely away (refused, timed out, shutting down), which is retried."""


class SchemaScriptError(ReplicationError):
    """A statement of the schema's pre- or post-data failed; names the object, keeps SQLSTATE."""

    def __init__(self, message: str, pgcode: str | None) -> None:
        self.pgcode = pgcode
        super().__init__(message)


def is_final(exc: BaseException) -> bool:
    """True when ``exc`` is a database error that a retry cannot fix."""
    import psycopg2  # here, so that this module of plain classes imports nothing heavy

    code = getattr(exc, "pgcode", None)
    if code:
        return code[:2] in FINAL_SQLSTATE_CLASSES
    if not isinstance(exc, psycopg2.Error):
        return False
    text = str(exc)
    return any(word in text for word in _FINAL_CONNECT_WORDS)


def one_line(exc: BaseException) -> str:
    """The error's message on one line (libpq's text spans several, with hints and context)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(exc) or type(exc).__name__
    return " ".join(text.split())
