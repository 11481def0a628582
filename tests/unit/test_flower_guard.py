"""Flower never runs unauthenticated: the guard's rules, and real Flower processes behind it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagila_tasks.cli.flower_guard import (
    MIN_PASSWORD_CHARS,
    check_flower_auth,
    guard,
    is_celery,
    subcommand,
)

ROOT = Path(__file__).resolve().parents[2]
GOOD = "admin:" + "x" * MIN_PASSWORD_CHARS
CELERY = "/venv/bin/celery"


# -- unit tests of the rules ---------------------------------------------------------------


def test_basic_auth_with_long_password_passes() -> None:
    """user:password with a password of at least 12 characters is accepted."""
    assert check_flower_auth([], {"FLOWER_BASIC_AUTH": GOOD}) is None


def test_several_basic_auth_entries_are_each_checked() -> None:
    """A comma-separated list passes only when every entry is user:long-password."""
    assert check_flower_auth([], {"FLOWER_BASIC_AUTH": f"{GOOD},ops:{'y' * 20}"}) is None
    error = check_flower_auth([], {"FLOWER_BASIC_AUTH": f"{GOOD},ops:short"})
    assert error is not None and "entry 2" in error


def test_missing_auth_is_refused() -> None:
    """No FLOWER_BASIC_AUTH and no OAuth: refused, and the message names the variable."""
    error = check_flower_auth(["--port=5555"], {})
    assert error is not None and "FLOWER_BASIC_AUTH=user:password" in error


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("adminonly", "user:password"),
        (":" + "x" * 20, "user:password"),
        ("admin:" + "x" * (MIN_PASSWORD_CHARS - 1), "shorter than 12"),
        ("admin:", "shorter than 12"),
        ("admin:change-me-flower-password", "sample password from .env.example"),
    ],
)
def test_bad_basic_auth_is_refused(value: str, needle: str) -> None:
    """Empty values, entries without user or colon, short passwords and .env.example's sample
    password are refused."""
    error = check_flower_auth([], {"FLOWER_BASIC_AUTH": value})
    assert error is not None and needle in error


def test_password_may_contain_colons() -> None:
    """Only the first colon separates user from password, as in HTTP basic auth."""
    assert check_flower_auth([], {"FLOWER_BASIC_AUTH": "admin:abc:def:ghi:jkl"}) is None


def test_oauth_needs_all_three_settings() -> None:
    """FLOWER_AUTH is accepted only with key, secret and redirect URI all set."""
    env = {
        "FLOWER_AUTH": r".*@example\.com",
        "FLOWER_OAUTH2_KEY": "k",
        "FLOWER_OAUTH2_SECRET": "s",
        "FLOWER_OAUTH2_REDIRECT_URI": "https://flower.example.com/login",
    }
    assert check_flower_auth([], env) is None
    del env["FLOWER_OAUTH2_SECRET"]
    error = check_flower_auth([], env)
    assert error is not None and "FLOWER_OAUTH2_SECRET" in error


@pytest.mark.parametrize("arg", ["--basic_auth=admin:" + "x" * 20, "--basic-auth=a:b"])
def test_secrets_on_the_command_line_are_refused(arg: str) -> None:
    """Credentials as options would show in ps, so they are refused even when valid."""
    error = check_flower_auth([arg], {"FLOWER_BASIC_AUTH": GOOD})
    assert error is not None and "FLOWER_BASIC_AUTH" in error and "ps" in error


def test_unauthenticated_api_switch_is_refused() -> None:
    """FLOWER_UNAUTHENTICATED_API=true is refused, whatever else is set."""
    error = check_flower_auth([], {"FLOWER_BASIC_AUTH": GOOD, "FLOWER_UNAUTHENTICATED_API": "1"})
    assert error is not None and "FLOWER_UNAUTHENTICATED_API" in error


def test_subcommand_skips_global_options_and_their_values() -> None:
    """The subcommand is the first word that is neither an option nor an option's value."""
    assert subcommand(["-A", "pagila_tasks", "flower", "--port=5555"]) == "flower"
    assert subcommand(["--app=pagila_tasks", "-b", "redis://x", "flower"]) == "flower"
    assert subcommand(["-A", "flower", "worker"]) == "worker"
    assert subcommand(["-A", "pagila_tasks", "worker", "-n", "flower@%h"]) == "worker"
    assert subcommand(["--help"]) is None


def test_only_celery_programs_are_guarded() -> None:
    """The celery script and python -m celery are recognised; pytest or pagila-submit are not."""
    assert is_celery("/venv/bin/celery")
    assert is_celery("/usr/lib/python3/site-packages/celery/__main__.py")
    assert not is_celery("/venv/bin/pytest")
    assert not is_celery("/venv/bin/pagila-submit")


def test_guard_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """An unauthenticated Flower command line exits 2 with a single stderr line."""
    with pytest.raises(SystemExit) as exc:
        guard([CELERY, "-A", "pagila_tasks", "flower", "--port=5555"], {})
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("flower: ") and "FLOWER_BASIC_AUTH" in err


def test_guard_ignores_other_commands() -> None:
    """Workers, inspect, and non-Celery programs that mention flower start without checks."""
    guard([CELERY, "-A", "pagila_tasks", "worker", "-Q", "copy,control"], {})
    guard([CELERY, "-A", "pagila_tasks", "inspect", "ping"], {})
    guard(["/venv/bin/pytest", "-k", "flower"], {})
    guard([CELERY, "-A", "pagila_tasks", "flower"], {"FLOWER_BASIC_AUTH": GOOD})
