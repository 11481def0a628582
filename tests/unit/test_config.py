"""The one configuration: defaults, validation, masking, and the retry policy of every task."""

from __future__ import annotations

import pytest

from pagila_tasks.base.errors import ConfigError
from pagila_tasks.config import (
    DEFAULT_REDIS_URL,
    DEFAULT_SOURCE_DSN,
    DEFAULT_TARGET_DSN,
    MIN_RETRIES,
    from_env,
    mask_dsn,
)
from tests.support import submit


def test_defaults_match_the_airflow_containers() -> None:
    """With nothing set, the settings point at the two database containers and local Redis."""
    s = from_env({})
    assert (
        s.source_dsn == DEFAULT_SOURCE_DSN == "postgresql://pagila:pagila_pw@localhost:5433/pagila"
    )
    assert s.target_dsn == DEFAULT_TARGET_DSN
    assert "localhost:5444" in s.target_dsn
    assert s.redis_url == DEFAULT_REDIS_URL == "redis://localhost:6379/0"
    assert s.spool_max_bytes == 134217728
    assert s.schemas == ("public",)
    assert s.sql_dir is None
    assert s.retry_max >= MIN_RETRIES and s.retry_delay == 60
    assert s.warm_connections and s.maintenance_work_mem == "512MB"
    assert from_env({"PAGILA_MAINTENANCE_WORK_MEM": ""}).maintenance_work_mem is None
    assert not from_env({"PAGILA_WARM_CONNECTIONS": "0"}).warm_connections


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PAGILA_SPOOL_MAX_BYTES": "lots"}, "PAGILA_SPOOL_MAX_BYTES"),
        ({"PAGILA_SOURCE_DSN": "mysql://x@y/z"}, "PAGILA_SOURCE_DSN"),
        ({"PAGILA_TARGET_DSN": "postgresql://u:p@h:notaport/db"}, "PAGILA_TARGET_DSN"),
        ({"PAGILA_REDIS_URL": "http://localhost"}, "PAGILA_REDIS_URL"),
        ({"PAGILA_RETRY_MAX": "1"}, "PAGILA_RETRY_MAX"),
        ({"PAGILA_SOURCE_DSN": ""}, "PAGILA_SOURCE_DSN"),
        ({"PAGILA_REDIS_URL": " "}, "PAGILA_REDIS_URL"),
        ({"PAGILA_TARGET_DSN": "postgresql://u:change-me-target@h:1/db"}, "PAGILA_TARGET_DSN"),
        ({"PAGILA_REDIS_URL": "redis://:change-me-redis@redis:6379/0"}, "PAGILA_REDIS_URL"),
        ({"PAGILA_SPOOL_MAX_BYTES": "0"}, "PAGILA_SPOOL_MAX_BYTES"),
        ({"PAGILA_SCHEMAS": 'public,"unclosed'}, "PAGILA_SCHEMAS"),
        ({"PAGILA_SCHEMAS": "public,pagila_support"}, "PAGILA_SCHEMAS"),
        ({"PAGILA_REPLACE": "copy"}, "PAGILA_REPLACE"),
        ({"PAGILA_SCHEDULE": "61 * * * *"}, "PAGILA_SCHEDULE"),
        ({"PAGILA_SCHEDULE": "every day"}, "PAGILA_SCHEDULE"),
        ({"PAGILA_SCHEDULE_JOB": "load"}, "PAGILA_SCHEDULE_JOB"),
        ({"PAGILA_SCHEMAS": " , "}, "PAGILA_SCHEMAS"),
        ({"PAGILA_WARM_CONNECTIONS": "maybe"}, "PAGILA_WARM_CONNECTIONS"),
        ({"PAGILA_MAINTENANCE_WORK_MEM": "1 TB please"}, "PAGILA_MAINTENANCE_WORK_MEM"),
        (
            {"PAGILA_TASK_TIME_LIMIT": "100", "PAGILA_VISIBILITY_TIMEOUT": "50"},
            "PAGILA_VISIBILITY_TIMEOUT",
        ),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    """Each malformed variable raises a ConfigError whose message starts with its name."""
    with pytest.raises(ConfigError) as info:
        from_env(env)
    assert info.value.variable == variable
    assert str(info.value).startswith(variable)


def test_settings_are_frozen_and_repr_masks_passwords() -> None:
    """Settings cannot be changed after build, and their repr never shows a password."""
    s = from_env({"PAGILA_SOURCE_DSN": "postgresql://u:s3cret-pw@h:1/db"})
    with pytest.raises(AttributeError):
        s.spool_max_bytes = 1  # type: ignore[misc]
    assert "s3cret-pw" not in repr(s)
    assert "s3cret-pw" not in s.scrub(
        "connection to postgresql://u:s3cret-pw@h:1/db failed s3cret-pw"
    )


def test_mask_dsn_forms() -> None:
    """Both URL and key=value DSNs lose their password."""
    assert mask_dsn("postgresql://a:b@c:1/d") == "postgresql://a:***@c:1/d"
    assert "xyz" not in mask_dsn("host=h password=xyz dbname=d")
    assert mask_dsn("redis://localhost:6379/0") == "redis://localhost:6379/0"


def test_bad_configuration_exits_2_with_one_line() -> None:
    """A command given a bad variable exits 2 with one line naming it, and no traceback."""
    proc = submit("history", env={"PAGILA_SPOOL_MAX_BYTES": "-5"}, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "PAGILA_SPOOL_MAX_BYTES" in lines[0]
    assert "Traceback" not in proc.stderr


def test_every_task_retries_at_least_twice_with_backoff() -> None:
    """Every registered pagila task retries at least 2 times, with the configured delay."""
    from pagila_tasks.app import app
    from pagila_tasks.config import settings

    app.loader.import_default_modules()
    tasks = {name: t for name, t in app.tasks.items() if name.startswith("pagila.")}
    assert {
        "pagila.load",
        "pagila.replicate",
        "pagila.copy_table",
        "pagila.build_table",
        "pagila.finish_replication",
        "pagila.fail_replication",
    } <= set(tasks)
    # Tasks that answer someone waiting (the submit-time checks) or a clock (the schedule) are
    # never retried: their answer is due now, and the next tick or submit asks again.
    answering = {"pagila.preflight", "pagila.scheduled"}
    assert answering <= set(tasks)
    for name in answering:
        assert tasks.pop(name).max_retries == 0
    for name, task in tasks.items():
        assert task.max_retries is not None and task.max_retries >= MIN_RETRIES, name
        assert task.autoretry_for, name
        assert task.retry_backoff == settings().retry_delay, name
        assert task.default_retry_delay == settings().retry_delay, name
    # the default delay, with nothing set, is the Airflow design's 60 s
    assert from_env({}).retry_delay == 60


def test_env_example_passwords_are_refused() -> None:
    """A .env copied from .env.example unchanged cannot run: its DSNs and Redis URL, built as
    compose builds them, are refused naming the variable."""
    from tests.support import ROOT

    sample = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    env = {
        "PAGILA_SOURCE_DSN": f"postgresql://pagila:{sample['SOURCE_PASSWORD']}@source:5432/pagila",
        "PAGILA_TARGET_DSN": f"postgresql://t:{sample['TARGET_PASSWORD']}@target:5432/pagila",
        "PAGILA_REDIS_URL": f"redis://:{sample['REDIS_PASSWORD']}@redis:6379/0",
    }
    for variable in env:
        with pytest.raises(ConfigError) as info:
            from_env({k: v for k, v in env.items() if k == variable})
        assert info.value.variable == variable


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u@h:1/db?password=change-me-source",
        "postgresql://u@h:1/db?sslmode=prefer&password=change-me",
        "postgresql://u@h:1/db?password=change-me%2Dtoo",
    ],
)
def test_query_string_sample_password_is_refused(dsn: str) -> None:
    """A sample password given as ``?password=`` is refused like one in the URL's user part."""
    with pytest.raises(ConfigError) as info:
        from_env({"PAGILA_SOURCE_DSN": dsn})
    assert info.value.variable == "PAGILA_SOURCE_DSN"
    assert "sample password" in str(info.value)
    scrubbed = from_env({"PAGILA_SOURCE_DSN": "postgresql://u@h:1/db?password=s3cret-qs"})
    assert "s3cret-qs" not in scrubbed.scrub("failed: s3cret-qs") + repr(scrubbed)


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:notaport/0",
        "redis://localhost:99999/0",
        "redis://:pw@[::1/0",
        "redis://::1]:6379/0",
    ],
)
def test_bad_redis_urls_are_one_line_naming_the_variable(url: str) -> None:
    """A Redis URL with a bad port or an unbalanced bracket is a ConfigError naming the variable
    (never a ValueError), and pagila-submit says so in one line with exit status 2."""
    with pytest.raises(ConfigError) as info:
        from_env({"PAGILA_REDIS_URL": url})
    assert info.value.variable == "PAGILA_REDIS_URL"
    assert "pw@" not in str(info.value)
    proc = submit("history", env={"PAGILA_REDIS_URL": url}, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "PAGILA_REDIS_URL" in lines[0], proc.stderr


@pytest.mark.parametrize("raw", ["nan", "NaN", "-nan", "inf", "+Inf", "-INFINITY", "infinity"])
@pytest.mark.parametrize("variable", ["PAGILA_RETRY_DELAY", "PAGILA_STALL_TIMEOUT"])
def test_nan_and_inf_are_refused_for_numbers(variable: str, raw: str) -> None:
    """``nan`` and ``inf`` in any case and with any sign are refused, naming the variable."""
    with pytest.raises(ConfigError) as info:
        from_env({variable: raw})
    assert info.value.variable == variable
    assert "finite" in str(info.value)


@pytest.mark.parametrize("variable", ["PAGILA_SCHEMAS", "PAGILA_REPLACE", "PAGILA_SQL_DIR"])
@pytest.mark.parametrize("empty", ["", "  "])
def test_set_but_empty_is_an_error(variable: str, empty: str) -> None:
    """PAGILA_SCHEMAS, PAGILA_REPLACE and PAGILA_SQL_DIR set but empty are errors, not the
    default."""
    with pytest.raises(ConfigError, match="set but empty") as info:
        from_env({variable: empty})
    assert info.value.variable == variable


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["history", "--limit", "0"], "--limit"),
        (["history", "--limit", "-3"], "--limit"),
        (["history", "--limit", "10000000000000000000000"], "--limit"),
        (["history", "--limit", "ten"], "--limit"),
        (["load", "--sql-dir", ""], "--sql-dir"),
        (["run", "--sql-dir", " "], "--sql-dir"),
        (["replicate", "--schemas", ""], "--schemas"),
    ],
)
def test_submit_usage_errors_are_one_line(
    argv: list[str], word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`history --limit` outside 1..1000 and an empty --sql-dir or --schemas exit 2 with one
    line naming the option, before anything reaches Redis or a worker."""
    from pagila_tasks.cli import submit as submit_cli

    assert submit_cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0], err
