"""Refuse to start Flower without authentication.

Flower can send, revoke and terminate tasks and shut workers down; left open, anyone who reaches
its port controls the pipeline. Flower itself starts happily without credentials, so
``celery -A pagila_tasks flower`` is checked here, at app import, before Flower binds a port.

Credentials come only from the environment (``FLOWER_BASIC_AUTH``, or ``FLOWER_AUTH`` with the
OAuth2 settings): on the command line ``ps`` would show them to every local user.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

MIN_PASSWORD_CHARS = 12
SAMPLE_PASSWORD_PREFIX = "change-me"  # noqa: S105 - .env.example's marker, refused
EXIT_USAGE = 2
_OAUTH_VARS = ("FLOWER_OAUTH2_KEY", "FLOWER_OAUTH2_SECRET", "FLOWER_OAUTH2_REDIRECT_URI")
_SECRET_OPTIONS = ("basic_auth", "oauth2_secret", "oauth2_key")
# Celery's global options that take a value, so their value is not taken for the subcommand.
_CELERY_VALUE_OPTIONS = frozenset(
    ("-A", "--app", "-b", "--broker", "--result-backend", "--loader", "--config", "--workdir")
)
_TRUE = ("1", "true", "yes", "on", "y", "t")


def subcommand(argv: Sequence[str]) -> str | None:
    """The Celery subcommand in ``argv`` (without the program name): first non-option word."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _CELERY_VALUE_OPTIONS:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        return arg
    return None


def _check_basic_auth(raw: str) -> str | None:
    """Each comma-separated ``user:password`` needs a user and a long enough password."""
    entries = [e for e in (p.strip() for p in raw.split(",")) if e]
    if not entries:
        return "FLOWER_BASIC_AUTH is empty; set it to user:password"
    for number, entry in enumerate(entries, start=1):
        user, sep, password = entry.partition(":")
        where = f"entry {number} of FLOWER_BASIC_AUTH" if len(entries) > 1 else "FLOWER_BASIC_AUTH"
        if not sep or not user:
            return f"{where} must be user:password"
        if len(password) < MIN_PASSWORD_CHARS:
            return f"{where} has a password shorter than {MIN_PASSWORD_CHARS} characters"
        if password.startswith(SAMPLE_PASSWORD_PREFIX):
            return f"{where} is the sample password from .env.example; set a real one"
    return None


def check_flower_auth(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """Why Flower must not start with ``argv`` (its options) and ``environ``, or None if it may.

    Accepted: ``FLOWER_BASIC_AUTH`` (one or more ``user:password``, passwords of 12+ characters),
    or ``FLOWER_AUTH`` (Flower's OAuth e-mail regexp) with all three ``FLOWER_OAUTH2_*`` set.
    Refused: secrets given as command-line options, and ``FLOWER_UNAUTHENTICATED_API``.
    """
    for arg in argv:
        name = arg.lstrip("-").partition("=")[0].replace("-", "_").lower()
        if arg.startswith("--") and name in _SECRET_OPTIONS:
            return (
                f"--{name} puts a secret on the command line, where ps shows it; "
                f"set FLOWER_{name.upper()} in the environment instead"
            )
    if (environ.get("FLOWER_UNAUTHENTICATED_API") or "").strip().lower() in _TRUE:
        return "FLOWER_UNAUTHENTICATED_API opens the control API to anyone; unset it"
    basic = environ.get("FLOWER_BASIC_AUTH")
    if basic is not None and basic.strip():
        return _check_basic_auth(basic)
    if (environ.get("FLOWER_AUTH") or "").strip():
        missing = [v for v in _OAUTH_VARS if not (environ.get(v) or "").strip()]
        if missing:
            return f"FLOWER_AUTH is set but {', '.join(missing)} is not"
        return None
    if basic is not None:
        return "FLOWER_BASIC_AUTH is empty; set it to user:password"
    return (
        "refusing to start without authentication: set FLOWER_BASIC_AUTH=user:password "
        f"(password of {MIN_PASSWORD_CHARS}+ characters)"
    )


def is_celery(program: str) -> bool:
    """True for the ``celery`` script and for ``python -m celery`` (``.../celery/__main__.py``)."""
    path = Path(program)
    return path.name == "celery" or (path.name == "__main__.py" and path.parent.name == "celery")


def guard(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    """Exit with status 2 and one line on stderr when this process is an unauthenticated Flower.

    ``argv`` is a whole command line, program first (default ``sys.argv``). Called when the app
    is imported; any other program or Celery command (worker, inspect, pytest) passes.
    """
    args = list(sys.argv if argv is None else argv)
    if not args or not is_celery(args[0]) or subcommand(args[1:]) != "flower":
        return
    options = args[args.index("flower", 1) + 1 :]
    error = check_flower_auth(options, os.environ if environ is None else environ)
    if error is not None:
        print(f"flower: {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USAGE)
