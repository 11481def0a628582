"""docker-compose.yml and workers/: checked statically against the real code, without Docker."""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.support import WHEEL_SOURCES

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read docker-compose.yml")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "workers" / "Dockerfile"
SERVICES = ("redis", "source", "target", "worker", "beat", "flower", "submit")
APP_SERVICES = ("worker", "beat", "flower", "submit")
REDIS_URL = re.compile(r"redis://:\$\{REDIS_PASSWORD:\?[^}]+\}@redis:6379/0")
_REF = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(:?[-?][^}]*)?\}$")
_SECRETISH = re.compile(r"PASSWORD|SECRET|AUTH|TOKEN", re.IGNORECASE)


@cache
def compose() -> dict[str, Any]:
    """The parsed compose file (anchors and merge keys resolved by PyYAML)."""
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def env_of(name: str) -> dict[str, str]:
    """A service's environment as a dict, whichever form (map or list) the file uses."""
    env = service(name).get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def argv(value: str | list[str]) -> list[str]:
    return value.split() if isinstance(value, str) else [str(v) for v in value]


def config_variables() -> set[str]:
    """Every ``PAGILA_*`` name that pagila_tasks/config.py reads."""
    text = (ROOT / "pagila_tasks" / "config.py").read_text()
    return set(re.findall(r"\"(PAGILA_[A-Z0-9_]+)\"", text))


def host_ports(name: str) -> set[int]:
    """Host-side ports published by a service (``[addr:]host:container[/proto]`` or long form)."""
    found = set()
    for entry in service(name).get("ports") or []:
        if isinstance(entry, dict):
            found.add(int(entry["published"]))
        else:
            parts = str(entry).split("/")[0].split(":")
            assert len(parts) >= 2, f"{name}: port {entry} publishes a random host port"
            found.add(int(parts[-2]))
    return found


def test_seven_services_exist() -> None:
    """The stack is exactly redis, source, target, worker, beat, flower and submit."""
    assert set(compose()["services"]) == set(SERVICES)


def test_worker_command_is_a_valid_celery_worker_on_the_routed_queues() -> None:
    """The worker runs `celery -A pagila_tasks worker`, with options Celery accepts, on the
    queues celeryconfig routes to (copy and the default control queue)."""
    from celery.bin.base import CLIContext
    from celery.bin.worker import worker

    import celeryconfig
    from pagila_tasks.app import app

    cmd = argv(service("worker")["command"])
    assert cmd[:4] == ["celery", "-A", "pagila_tasks", "worker"]
    ctx = worker.make_context("worker", cmd[4:], obj=CLIContext(app, no_color=True, workdir=None))
    routed = {route["queue"] for route in celeryconfig.task_routes.values()}
    routed.add(celeryconfig.task_default_queue)
    assert set(ctx.params["queues"]) == routed == {"copy", "control"}
    assert ctx.params["concurrency"] == 2


def test_flower_command_is_celery_flower_with_known_options() -> None:
    """Flower runs as the `flower` Celery subcommand on port 5555, with options Flower defines."""
    from celery.bin.celery import celery
    from flower.command import is_flower_option

    cmd = argv(service("flower")["command"])
    assert cmd[:4] == ["celery", "-A", "pagila_tasks", "flower"]
    assert "flower" in celery.commands
    assert "--port=5555" in cmd
    assert all(is_flower_option(opt) for opt in cmd[4:])


def test_submit_runs_pagila_submit_and_its_subcommands_exist() -> None:
    """submit's entrypoint ends in the pagila-submit script, whose parser accepts run/status/…"""
    import tomllib

    from pagila_tasks.cli.submit import parser

    entry = argv(service("submit")["entrypoint"])
    assert entry[-1] == "pagila-submit"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["pagila-submit"] == "pagila_tasks.cli.submit:entry"
    p = parser()
    for args in (["run"], ["load"], ["replicate"], ["history"], ["status", "x"], ["cancel", "x"]):
        assert p.parse_args(args).command == args[0]
    with pytest.raises(SystemExit) as exc:
        p.parse_args(argv(service("submit")["command"]))
    assert exc.value.code == 0


def test_submit_is_one_shot_and_kept_out_of_up() -> None:
    """submit sits in a profile (so `up` skips it; `run` works) and is never restarted."""
    assert "submit" in service("submit").get("profiles", [])
    assert str(service("submit").get("restart", "no")) == "no"


def test_every_pagila_variable_is_one_config_reads() -> None:
    """No compose or Dockerfile PAGILA_* setting is a typo that config.py would silently ignore."""
    known = config_variables()
    assert {"PAGILA_SOURCE_DSN", "PAGILA_TARGET_DSN", "PAGILA_REDIS_URL"} <= known
    for name in APP_SERVICES:
        unknown = {k for k in env_of(name) if k.startswith("PAGILA_")} - known
        assert not unknown, f"{name}: {unknown}"
    in_dockerfile = set(re.findall(r"\b(PAGILA_[A-Z0-9_]+)=", DOCKERFILE.read_text()))
    assert in_dockerfile <= known, in_dockerfile - known


def test_workers_and_submit_reach_the_compose_servers() -> None:
    """worker and submit use the compose hostnames, roles and the shared Redis URL."""
    for name in ("worker", "submit"):
        env = env_of(name)
        assert re.fullmatch(
            r"postgresql://pagila:\$\{[^}]+\}@source:5432/pagila", env["PAGILA_SOURCE_DSN"]
        )
        assert re.fullmatch(
            r"postgresql://pagila_tgt:\$\{[^}]+\}@target:5432/pagila", env["PAGILA_TARGET_DSN"]
        )
        assert REDIS_URL.fullmatch(env["PAGILA_REDIS_URL"])
        assert "PAGILA_SQL_DIR" not in env


def _secret_values() -> list[tuple[str, str, str]]:
    """(service, variable, value) for every password-like setting and every URL with userinfo."""
    found = []
    for name in compose()["services"]:
        for key, value in env_of(name).items():
            if _SECRETISH.search(key) or re.search(r"://[^/@]*:[^/@]*@", value):
                found.append((name, key, value))
    return found


def test_no_literal_password_in_compose() -> None:
    """Every password (plain or inside a URL) is a ${...} reference to .env, never a literal."""
    secrets = _secret_values()
    assert len(secrets) >= 6
    for name, key, value in secrets:
        if "://" in value:
            password = re.search(r"://[^/@:]*:([^@]*)@", value)
            assert password and _REF.match(password.group(1)), f"{name}.{key}"
        else:
            assert _REF.match(value), f"{name}.{key} = {value!r} is not a ${{...}} reference"
    # Required secrets fail loudly when .env lacks them, instead of becoming empty strings.
    for name in ("source", "target"):
        assert ":?" in env_of(name)["POSTGRES_PASSWORD"]


def test_database_owners_are_not_the_superuser() -> None:
    """The postgres superuser is postgres_admin; the init script makes a plain owner role."""
    script = (ROOT / "workers" / "initdb" / "01-roles.sh").read_text()
    assert "NOSUPERUSER NOCREATEROLE NOCREATEDB" in script
    for name, role in (("source", "pagila"), ("target", "pagila_tgt")):
        env = env_of(name)
        assert env["POSTGRES_USER"] == "postgres_admin"
        assert env["APP_DB_USER"] == role and env["APP_DB_NAME"] == "pagila"
        mounts = [str(v) for v in service(name).get("volumes", [])]
        assert any(m.endswith(":/docker-entrypoint-initdb.d:ro") for m in mounts)


def test_healthchecks_and_startup_order() -> None:
    """redis/source/target have healthchecks; the app services wait until they are healthy."""
    tests = {name: " ".join(argv(service(name)["healthcheck"]["test"])) for name in SERVICES[:3]}
    assert "redis-cli ping" in tests["redis"]
    assert "pg_isready" in tests["source"] and "-U pagila -d pagila" in tests["source"]
    assert "pg_isready" in tests["target"] and "-d pagila" in tests["target"]
    needs = {"worker": {"redis", "source", "target"}, "submit": {"redis", "source", "target"}}
    needs["flower"] = {"redis"}
    for name, deps in needs.items():
        depends = service(name)["depends_on"]
        assert set(depends) >= deps, name
        for dep in depends:
            assert depends[dep]["condition"] == "service_healthy", f"{name} -> {dep}"


def redis_script() -> str:
    """The ``sh -c`` script that starts redis-server (the password is expanded inside it)."""
    cmd = argv(service("redis")["command"])
    assert cmd[:2] == ["sh", "-c"], cmd
    return cmd[2]


def redis_server_argv() -> list[str]:
    """redis-server's arguments, as sh will pass them (the heredoc feeds its stdin)."""
    line = next(ln for ln in redis_script().splitlines() if "redis-server" in ln)
    words = shlex.split(line.split("<<", 1)[0])
    return words[words.index("redis-server") :]


def test_redis_persists_with_appendonly() -> None:
    """Redis (broker, results, lock) keeps its data across restarts: appendonly on a volume."""
    cmd = redis_server_argv()
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data") for v in service("redis")["volumes"])


def test_compose_refuses_to_start_without_redis_password() -> None:
    """REDIS_PASSWORD has no default: every use is ${REDIS_PASSWORD:?...}, so Compose stops."""
    text = COMPOSE.read_text()
    uses = re.findall(r"\$\{REDIS_PASSWORD([^}]*)\}", text.replace("$${REDIS_PASSWORD}", ""))
    assert len(uses) >= 4
    assert all(use.startswith(":?") for use in uses), uses
    assert re.fullmatch(r"\$\{REDIS_PASSWORD:\?[^}]+\}", env_of("redis")["REDIS_PASSWORD"])


def test_every_redis_url_carries_the_password() -> None:
    """Every Redis URL in the file (workers, beat, submit, Flower) authenticates."""
    text = COMPOSE.read_text()
    urls = re.findall(r"redis://(?:\$\{[^}]*\}|[^\s$\"'])+", text)
    assert urls and all(REDIS_URL.fullmatch(u) for u in urls), urls
    for name in APP_SERVICES:
        assert REDIS_URL.fullmatch(env_of(name)["PAGILA_REDIS_URL"]), name
    for name, svc in compose()["services"].items():
        cmd = argv(svc.get("command") or []) + argv(svc.get("entrypoint") or [])
        assert not {"-b", "--broker"} & set(cmd), f"{name}: broker URL on a command line"


def test_redis_requires_its_password_without_showing_it_to_ps() -> None:
    """redis-server reads requirepass from stdin (never a --requirepass argument) and has no
    CONFIG command; the image's entrypoint still drops it to the redis user."""
    script = redis_script()
    cmd = redis_server_argv()
    assert cmd[1] == "-", "the config (with requirepass) is read from stdin"
    assert "--requirepass" not in script
    assert re.search(r'^requirepass "\$\$\{REDIS_PASSWORD\}"$', script, re.M)
    assert cmd[cmd.index("--rename-command") + 1 :][:2] == ["CONFIG", ""]
    assert script.lstrip().startswith("exec docker-entrypoint.sh redis-server")
    assert "entrypoint" not in service("redis")


def test_redis_healthcheck_authenticates() -> None:
    """The healthcheck sends the password (REDISCLI_AUTH) and wants PONG, not just exit 0."""
    env = env_of("redis")
    assert re.fullmatch(r"\$\{REDIS_PASSWORD:\?[^}]+\}", env["REDISCLI_AUTH"])
    test = " ".join(argv(service("redis")["healthcheck"]["test"]))
    assert "redis-cli ping" in test and "PONG" in test


def test_beat_is_one_celery_beat_with_the_schedule_variables() -> None:
    """beat runs `celery -A pagila_tasks beat` (valid options, writable schedule), one replica,
    with the pagila environment plus PAGILA_SCHEDULE and PAGILA_SCHEDULE_JOB (default run)."""
    from celery.bin.base import CLIContext
    from celery.bin.beat import beat

    from pagila_tasks.app import app

    cmd = argv(service("beat")["command"])
    assert cmd[:4] == ["celery", "-A", "pagila_tasks", "beat"]
    ctx = beat.make_context("beat", cmd[4:], obj=CLIContext(app, no_color=True, workdir=None))
    assert ctx.params["schedule"].startswith("/tmp/")  # noqa: S108 - writable in the image
    assert service("beat")["deploy"]["replicas"] == 1
    assert "ports" not in service("beat")
    env = env_of("beat")
    assert env["PAGILA_SCHEDULE"] == "${PAGILA_SCHEDULE:-}"
    assert env["PAGILA_SCHEDULE_JOB"] == "${PAGILA_SCHEDULE_JOB:-run}"
    worker_env = env_of("worker")
    assert {k: v for k, v in env.items() if k in worker_env} == worker_env
    # workers refuse pagila.scheduled without a schedule of their own
    assert worker_env["PAGILA_SCHEDULE"] == env["PAGILA_SCHEDULE"]


def test_flower_requires_basic_auth() -> None:
    """Flower gets FLOWER_BASIC_AUTH from .env, required, and no database secret."""
    env = env_of("flower")
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}", env["FLOWER_BASIC_AUTH"])
    assert not any(k.endswith("_DSN") for k in env)


def test_host_ports() -> None:
    """Source on 5433, target on 5444, Flower on 5555; Redis, workers and submit publish none."""
    assert host_ports("source") == {5433}
    assert host_ports("target") == {5444}
    assert host_ports("flower") == {5555}
    for name in ("redis", "worker", "beat", "submit"):
        assert not service(name).get("ports"), name


def test_worker_is_scalable() -> None:
    """No container_name, hostname or host port on the worker, so `--scale worker=N` works."""
    worker = service("worker")
    for key in ("container_name", "hostname", "ports"):
        assert key not in worker


def test_app_services_share_one_image_built_from_workers() -> None:
    """worker, flower and submit run the image built from workers/Dockerfile."""
    images = {service(n)["image"] for n in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        build = service(name)["build"]
        assert build["dockerfile"] == "workers/Dockerfile" and build["context"] == "."


def _first_int(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not found"
    return int(match.group(1))


def test_dockerfile_pg_dump_is_at_least_the_server_major() -> None:
    """The image's pg_dump major is >= the compose servers' PostgreSQL major."""
    text = DOCKERFILE.read_text()
    client = _first_int(r"ARG PG_CLIENT_MAJOR=(\d+)", text)
    assert "postgresql-client-${PG_CLIENT_MAJOR}" in text
    assert "PAGILA_PG_DUMP=/usr/lib/postgresql/${PG_CLIENT_MAJOR}/bin/pg_dump" in text
    servers = {_first_int(r"^postgres:(\d+)", service(n)["image"]) for n in ("source", "target")}
    assert client >= max(servers)


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's stages, each a list of instructions (continuations joined, no comments)."""
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#")]
    instructions = re.sub(r"\\\n\s*", " ", "\n".join(lines)).splitlines()
    stages: list[list[str]] = []
    for ins in (i.strip() for i in instructions if i.strip()):
        if ins.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(ins)
    return stages


def test_dockerfile_conventions() -> None:
    """python:3.12-slim base, locked install, non-root user, shared entrypoint, no `COPY . .`."""
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.12-slim", text, re.M)
    assert re.search(r"-c \S*requirements\.lock\b", text)
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert 'ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]' in text
    assert not re.search(r"^COPY \. ", text, re.M)
    entry = (ROOT / "workers" / "entrypoint.sh").read_text()
    assert 'exec "$@"' in entry


def test_env_example_covers_every_required_variable() -> None:
    """Each ${VAR:?...} the compose file requires has a change-me placeholder in .env.example."""
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE.read_text()))
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert required, "compose requires no variable"
    for name in required:
        assert "change-me" in example.get(name, ""), name


def test_dockerfile_builds_a_wheel_and_installs_only_that() -> None:
    """A builder stage makes the wheel from the sources; the final stage installs that `.whl`
    with the lock as constraints, copies no source tree or sql/, and nothing installs editable."""
    text = DOCKERFILE.read_text()
    assert not re.search(r"pip3? install[^\n]*\s(-e|--editable)\b", text)
    *builders, final = dockerfile_stages()
    assert len(builders) == 1 and re.match(r"FROM \S+ AS (\w+)$", builders[0][0], re.I)
    builder = builders[0][0].split()[-1]
    copied = {
        src.rstrip("/")
        for ins in builders[0]
        if ins.startswith("COPY ")
        for src in ins.split()[1:-1]
        if not src.startswith("--")
    }
    assert copied == set(WHEEL_SOURCES)
    assert any(re.search(r"\bpip wheel --no-deps\b.* \.$", ins) for ins in builders[0])

    installs = [i for i in final if re.search(r"\bpip3? install\b", i)]
    assert len(installs) == 1, installs
    assert f"from={builder}" in installs[0]
    assert re.search(r"pip install -c \S*requirements\.lock \S+\.whl$", installs[0]), installs
    final_copies = " ".join(i for i in final if i.startswith(("COPY ", "ADD ")))
    for source in ("pagila_tasks", "sql/", "pyproject.toml", "celeryconfig.py"):
        assert source not in final_copies, source
