"""`make bench`: replicate Pagila (as loaded, and scaled) with this project and with the usual
alternatives, on the same two local servers, and write the results into docs/benchmarks.md.

    .venv/bin/python bench/run.py [--scales 1,50] [--runs 3] [--methods ours,pgcopydb,..]
    .venv/bin/python bench/run.py --memory            # the spool-cap memory check only

The script brings up its own stack (two PostgreSQL servers + Redis, state in --state-dir, purged
at the end), applies the benchmark's server settings to both servers, loads Pagila with
``pagila-submit load``, scales it with bench/scale.sql, then for each dataset runs every method
--runs times (the method order rotates from run to run), resetting the target before each run
and checking its row counts against the source after it. See docs/benchmarks.md for the methods.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import adapt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pagila_tasks import pgtools  # noqa: E402
from pagila_tasks.stack.stack import Stack  # noqa: E402

BENCH = ROOT / "bench"
DOCS = ROOT / "docs" / "benchmarks.md"
RESULTS_START, RESULTS_END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
MEMORY_START, MEMORY_END = "<!-- bench:memory:start -->", "<!-- bench:memory:end -->"
MB = 1024 * 1024

SERVER_SETTINGS = {
    "shared_buffers": "1GB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "8GB",
}
"""Set with ALTER SYSTEM on both servers (the issue's settings); the rest are the stack's."""
SHOWN_SETTINGS = (
    "shared_buffers",
    "maintenance_work_mem",
    "work_mem",
    "max_wal_size",
    "wal_level",
    "synchronous_commit",
    "fsync",
    "full_page_writes",
    "max_parallel_maintenance_workers",
)
METHODS = (
    "ours",
    "pg_dump|pg_restore",
    "dump-dir-j2",
    "pgcopydb",
    "airflow",
    "floor-text",
    "floor-binary",
)


def say(text: str) -> None:
    print(text, flush=True)


class NotAvailable(Exception):
    """The method cannot run here; the message says why (printed as n/a)."""


class RunFailed(Exception):
    """The method ran but failed or copied wrong row counts."""


# -- memory sampling --------------------------------------------------------------------------


def _proc_table() -> dict[int, int]:
    """pid -> ppid for every process."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[-1].split()
        out[int(entry.name)] = int(fields[1])
    return out


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _label(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    argv = [a.decode(errors="replace") for a in raw if a]
    if not argv:
        return "?"
    if "celery" in argv and "worker" in argv:
        return "celery worker"
    if "pagila_tasks.snapshot" in argv:
        return "snapshot holder"
    if Path(argv[0]).name.startswith("python") and len(argv) > 1:
        return Path(argv[1]).name if not argv[1].startswith("-") else " ".join(argv[1:3])
    return Path(argv[0]).name


class RssSampler:
    """Peak resident memory (VmHWM) of every process under ``roots()``, sampled in a thread.

    VmHWM is the kernel's own high-water mark, so a sample taken any time before a process
    exits sees its true peak; only processes living less than one interval can be missed.
    """

    def __init__(self, roots: Callable[[], list[int]], interval: float = 0.2) -> None:
        self.roots = roots
        self.interval = interval
        self.peaks: dict[int, tuple[int, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, ppid in table.items():
            children.setdefault(ppid, []).append(pid)
        todo = [p for p in self.roots() if p in table]
        seen: set[int] = set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            todo.extend(children.get(pid, []))
            kb = _hwm_kb(pid)
            old = self.peaks.get(pid)
            if old is None or kb > old[0]:
                self.peaks[pid] = (kb, old[1] if old else _label(pid))

    def peak(self) -> tuple[int, str]:
        """(bytes, label) of the process with the largest peak."""
        if not self.peaks:
            return 0, "-"
        kb, label = max(self.peaks.values())
        return kb * 1024, label

    def by_label(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for kb, label in self.peaks.values():
            out[label] = max(out.get(label, 0), kb * 1024)
        return out


METHOD_TIMEOUT = 3600.0


def run_measured(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> dict[str, Any]:
    """Run ``argv`` to its end; wall seconds, output, and the peak RSS of its process tree.

    The command gets its own session: pgcopydb ends a failed run by signalling its whole
    process group, which must not be ours. It is killed (group and all) after METHOD_TIMEOUT.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    with RssSampler(lambda: [proc.pid]) as sampler:
        try:
            out, err = proc.communicate(timeout=METHOD_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            out, err = proc.communicate()
            err += f"\nkilled after {METHOD_TIMEOUT:.0f} s"
    seconds = time.monotonic() - started
    peak, label = sampler.peak()
    return {
        "seconds": seconds,
        "rc": proc.returncode,
        "stdout": out,
        "stderr": err,
        "peak_rss": peak,
        "peak_proc": label,
        "peaks": sampler.by_label(),
    }


def last_line(text: str) -> str:
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1] if lines else "no output"


def du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


# -- the bench context ------------------------------------------------------------------------


@dataclass
class Result:
    method: str
    dataset: str
    seconds: float
    peak_rss: int
    peak_proc: str
    spilled: int
    detail: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.state_dir = Path(args.state_dir).absolute()
        self.stack = Stack(
            self.state_dir, servers=args.servers, echo=lambda m: say(f"  stack: {m}")
        )
        self.env: dict[str, str] = {}
        self.tools: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.worker_env: dict[str, str] = {}
        self.worker_pids: list[int] = []
        self.ours_steps: dict[str, list[dict[str, Any]]] = {}

    # -- stack ----------------------------------------------------------------------------

    def up(self) -> None:
        say(f"stack in {self.state_dir}")
        self.stack.up(workers=0)
        for which in ("source", "target"):
            for name, value in SERVER_SETTINGS.items():
                self.admin(which, f"ALTER SYSTEM SET {name} = '{value}'")
            cluster = self.stack.cluster(which)
            cluster.stop()
            cluster.start()
        stack_env = self.stack.env()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PAGILA_")},
            **{k: v for k, v in stack_env.items() if k.startswith("PAGILA_")},
            "PAGILA_STACK_DIR": str(self.state_dir),
            "PYTHONUNBUFFERED": "1",
        }
        if self.args.sql_dir:
            self.env["PAGILA_SQL_DIR"] = self.args.sql_dir
        self.env["BENCH_SOURCE_DSN"] = stack_env["PAGILA_SOURCE_DSN"]
        self.env["BENCH_TARGET_DSN"] = stack_env["PAGILA_TARGET_DSN"]
        self.env["PGPASSFILE"] = str(self._pgpass(stack_env))
        self.env["PGAPPNAME"] = "pagila-bench"
        major = self.server_major()
        pg_dump = pgtools.find_tool("pg_dump", major)
        self.tools = {
            "pg_dump": str(pg_dump),
            "pg_restore": str(pg_dump.with_name("pg_restore")),
            "psql": str(pg_dump.with_name("psql")),
        }
        self.env["PATH"] = f"{pg_dump.parent}:{self.env.get('PATH', '')}"
        self.env["PAGILA_PG_DUMP"] = str(pg_dump)

    def _pgpass(self, stack_env: dict[str, str]) -> Path:
        lines = []
        for var in ("PAGILA_SOURCE_DSN", "PAGILA_TARGET_DSN"):
            parts = urlsplit(stack_env[var])
            from urllib.parse import unquote

            fields = [
                parts.hostname or "",
                str(parts.port),
                parts.path.strip("/"),
                unquote(parts.username or ""),
                unquote(parts.password or ""),
            ]
            lines.append(":".join(f.replace("\\", "\\\\").replace(":", "\\:") for f in fields))
        path = self.state_dir / "bench.pgpass"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        return path

    def down(self) -> None:
        if self.args.keep:
            say(f"--keep: the stack keeps running in {self.state_dir}")
            return
        for name in ("bench.pgpass", "bench-dump-dir", "bench-pgcopydb"):
            path = self.state_dir / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        self.stack.down(purge=True)

    def conninfo(self, which: str) -> str:
        dsn = self.env["BENCH_SOURCE_DSN" if which == "source" else "BENCH_TARGET_DSN"]
        return pgtools.conninfo_and_env(dsn)[0]

    def connect(self, which: str) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            self.env["BENCH_SOURCE_DSN" if which == "source" else "BENCH_TARGET_DSN"]
        )

    def admin(self, which: str, statement: str) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(self.stack.admin_dsn(which))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def server_major(self) -> int:
        return int(self.admin("source", "SHOW server_version_num")[0][0]) // 10000

    # -- workers ----------------------------------------------------------------------------

    def restart_workers(self, extra_env: dict[str, str] | None = None) -> None:
        """Fresh workers (so VmHWM is per run), waited for until Celery says ready."""
        self.stack.stop_workers()
        self.worker_env = extra_env or {}
        offsets = {}
        for i in (1, 2):
            log = self.stack.logs / f"w{i}.log"
            offsets[log] = log.stat().st_size if log.exists() else 0
        env = {k: v for k, v in self.env.items() if k.startswith("PAGILA_") or k == "PATH"}
        self.worker_pids = self.stack.start_workers(2, extra_env={**env, **self.worker_env})
        deadline = time.monotonic() + 90
        for log, offset in offsets.items():
            while True:
                text = log.read_text(errors="replace")[offset:] if log.exists() else ""
                if re.search(r"\bready\.", text):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not become ready, see {log}")
                time.sleep(0.2)

    def worker_tree_roots(self) -> list[int]:
        return list(self.worker_pids)

    # -- data -------------------------------------------------------------------------------

    def load(self) -> None:
        say("loading Pagila into the source (pagila-submit load)")
        self.restart_workers()
        proc = subprocess.run(
            [*self.submit_argv(), "load", "--json"], env=self.env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SystemExit(f"load failed: {last_line(proc.stdout)} {last_line(proc.stderr)}")

    def submit_argv(self) -> list[str]:
        script = Path(sys.executable).with_name("pagila-submit")
        return (
            [str(script)] if script.exists() else [sys.executable, "-m", "pagila_tasks.cli.submit"]
        )

    def scale(self, n: int) -> dict[str, Any]:
        say(f"scaling the source to x{n} (bench/scale.sql)")
        started = time.monotonic()
        proc = subprocess.run(
            [
                self.tools["psql"],
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                f"scale={n}",
                "-f",
                str(BENCH / "scale.sql"),
                "-d",
                self.conninfo("source"),
            ],
            env=self.env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"scale.sql failed: {proc.stderr.strip()}")
        self.counts = self.table_counts("source")
        with self.connect("source") as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'm')"
            )
            size = int(cur.fetchone()[0])
        conn.close()
        parts = {k: v for k, v in self.counts.items() if k.startswith("payment_p")}
        info = {
            "scale": n,
            "bytes": size,
            "rows": sum(self.counts.values()),
            "rental": self.counts.get("rental", 0),
            "inventory": self.counts.get("inventory", 0),
            "payment_parts": (min(parts.values()), max(parts.values())) if parts else (0, 0),
            "seconds": round(time.monotonic() - started, 1),
        }
        say(
            f"  x{n}: {size / MB:.0f} MB on disk (tables + indexes), {info['rows']} rows, "
            f"rental {info['rental']}, payment partitions {info['payment_parts'][0]}.."
            f"{info['payment_parts'][1]} rows ({info['seconds']} s)"
        )
        return info

    def table_counts(self, which: str) -> dict[str, int]:
        with self.connect(which) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
                "AND c.relkind = 'r' ORDER BY 1"
            )
            names = [r[0] for r in cur.fetchall()]
            out = {}
            for name in names:
                cur.execute(
                    sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier("public", name))
                )
                out[name] = int(cur.fetchone()[0])
        conn.close()
        return out

    def reset_target(self, create_public: bool = True) -> None:
        """Drop public (and our pagila_support), recreate public as the database owner.

        ``create_public=False`` for the methods restoring a pg_dump archive of ``-n public``:
        it holds its own ``CREATE SCHEMA public``.
        """
        conn = self.connect("target")
        try:
            with conn.cursor() as cur:
                cur.execute("DROP SCHEMA IF EXISTS public CASCADE")
                cur.execute("DROP SCHEMA IF EXISTS pagila_support CASCADE")
                if create_public:
                    cur.execute("CREATE SCHEMA public")
            conn.commit()
        finally:
            conn.close()
        self.admin("target", "CHECKPOINT")
        self.admin("source", "CHECKPOINT")

    def verify(self, method: str) -> None:
        got = self.table_counts("target")
        bad = {t: (n, got.get(t)) for t, n in self.counts.items() if got.get(t) != n}
        if bad:
            shown = ", ".join(f"{t} {s}!={g}" for t, (s, g) in sorted(bad.items())[:5])
            raise RunFailed(f"{method}: row counts differ from the source: {shown}")

    # -- methods ----------------------------------------------------------------------------

    def m_ours(self, dataset: str) -> Result:
        self.restart_workers()
        started_wall = time.time()
        started = time.monotonic()
        proc = subprocess.Popen(
            [*self.submit_argv(), "replicate", "--json"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with RssSampler(self.worker_tree_roots) as sampler:
            out, err = proc.communicate()
        seconds = time.monotonic() - started
        try:
            record = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RunFailed(
                f"ours: no JSON from pagila-submit (rc {proc.returncode}): {last_line(err)}"
            ) from None
        if proc.returncode != 0 or record.get("state") != "succeeded":
            raise RunFailed(f"ours: {record.get('state')}: {record.get('error')}")
        units = record.get("units", {})
        spilled = sum(int(u.get("bytes", 0)) for u in units.values() if u.get("spilled"))
        peak, label = sampler.peak()
        steps = self.step_lines(record["run_id"], started_wall)
        detail = {
            "run_id": record["run_id"],
            "lock_to_audit": self.lock_to_audit(record),
            "units": {
                name: {k: u.get(k) for k in ("rows", "bytes", "spilled", "seconds", "worker")}
                for name, u in units.items()
            },
            "steps": steps,
            "peaks": sampler.by_label(),
        }
        return Result("ours", dataset, seconds, peak, label, spilled, detail)

    def lock_to_audit(self, record: dict[str, Any]) -> float:
        """Seconds from the run's lock (its record is created right after) to its audit row."""
        (finished,) = self.admin(
            "target",
            "SELECT extract(epoch FROM finished_at) FROM pagila_support.replication_audit "
            f"WHERE run_id = {adapt(record['run_id']).getquoted().decode()}",
        )[0]
        submitted = datetime.fromisoformat(record["submitted_at"]).timestamp()
        return round(float(finished) - submitted, 3)

    def step_lines(self, run_id: str, t0: float) -> list[dict[str, Any]]:
        """STEP and 'copied' lines of the workers' logs for ``run_id``, seconds from ``t0``."""
        pattern = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/([^\]]+)\] (.*)$")
        found = []
        for i in (1, 2):
            log = self.stack.logs / f"w{i}.log"
            if not log.exists():
                continue
            for line in log.read_text(errors="replace").splitlines():
                m = pattern.match(line)
                if not m:
                    continue
                msg = m.group(3)
                if not ((msg.startswith("STEP ") and run_id in msg) or msg.startswith("copied ")):
                    continue
                at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                if at < t0 - 1:
                    continue
                found.append(
                    {"t": round(at - t0, 3), "worker": f"w{i}", "msg": msg.replace(run_id, "RUN")}
                )
        return sorted(found, key=lambda s: s["t"])

    def m_dump_pipe(self, dataset: str) -> Result:
        t = self.tools
        common = "--no-owner --no-privileges"
        cmd = (
            f"set -o pipefail; {shlex.quote(t['pg_dump'])} -Fc -n public {common} "
            f"-d {shlex.quote(self.conninfo('source'))} | {shlex.quote(t['pg_restore'])} {common} "
            f"--exit-on-error -d {shlex.quote(self.conninfo('target'))}"
        )
        r = run_measured(["bash", "-c", cmd], self.env)
        if r["rc"] != 0:
            raise RunFailed(f"pg_dump|pg_restore: {last_line(r['stderr'])}")
        return Result(
            "pg_dump|pg_restore",
            dataset,
            r["seconds"],
            r["peak_rss"],
            r["peak_proc"],
            0,
            {"peaks": r["peaks"]},
        )

    def m_dump_dir(self, dataset: str) -> Result:
        t = self.tools
        out = self.state_dir / "bench-dump-dir"
        shutil.rmtree(out, ignore_errors=True)
        common = "--no-owner --no-privileges"
        cmd = (
            f"set -e; {shlex.quote(t['pg_dump'])} -Fd -j 2 -n public {common} "
            f"-f {shlex.quote(str(out))} "
            f"-d {shlex.quote(self.conninfo('source'))}; du -sb {shlex.quote(str(out))} >&2; "
            f"{shlex.quote(t['pg_restore'])} -j 2 {common} --exit-on-error "
            f"-d {shlex.quote(self.conninfo('target'))} {shlex.quote(str(out))}"
        )
        r = run_measured(["bash", "-c", cmd], self.env)
        spilled = du(out)
        shutil.rmtree(out, ignore_errors=True)
        if r["rc"] != 0:
            raise RunFailed(f"pg_dump -Fd: {last_line(r['stderr'])}")
        return Result(
            "dump-dir-j2",
            dataset,
            r["seconds"],
            r["peak_rss"],
            r["peak_proc"],
            spilled,
            {"peaks": r["peaks"]},
        )

    def m_pgcopydb(self, dataset: str) -> Result:
        exe = shutil.which("pgcopydb")
        if not exe:
            raise NotAvailable("pgcopydb is not installed (apt-get install pgcopydb)")
        work = self.state_dir / "bench-pgcopydb"
        shutil.rmtree(work, ignore_errors=True)
        argv = [
            exe,
            "clone",
            "--source",
            self.conninfo("source"),
            "--target",
            self.conninfo("target"),
            "--table-jobs",
            "2",
            "--index-jobs",
            "2",
            "--no-owner",
            "--no-acl",
            "--dir",
            str(work),
        ]
        r = run_measured(argv, self.env)
        spilled = du(work)
        if r["rc"] != 0:
            err = [x for x in r["stderr"].splitlines() if "ERROR" in x] or [last_line(r["stderr"])]
            shutil.rmtree(work, ignore_errors=True)
            raise NotAvailable(f"pgcopydb failed: {err[0][-200:]}")
        shutil.rmtree(work, ignore_errors=True)
        return Result(
            "pgcopydb",
            dataset,
            r["seconds"],
            r["peak_rss"],
            r["peak_proc"],
            spilled,
            {"peaks": r["peaks"]},
        )

    def _script(self, method: str, dataset: str, script: str, *options: str) -> Result:
        """Run one of the plain-script methods measured, and read its JSON summary."""
        argv = [
            sys.executable,
            str(BENCH / script),
            *options,
            "--pg-dump",
            self.tools["pg_dump"],
            "--pg-restore",
            self.tools["pg_restore"],
        ]
        r = run_measured(argv, self.env)
        if r["rc"] != 0:
            raise RunFailed(f"{method}: {last_line(r['stderr'])}")
        info = json.loads(last_line(r["stdout"]))
        return Result(
            method,
            dataset,
            r["seconds"],
            r["peak_rss"],
            r["peak_proc"],
            info.get("spilled_bytes", 0),
            {"phases": info["phases"], "peaks": r["peaks"]},
        )

    def m_airflow(self, dataset: str) -> Result:
        return self._script("airflow", dataset, "airflow_copy.py")

    def m_floor(self, fmt: str, dataset: str) -> Result:
        return self._script(
            f"floor-{fmt}",
            dataset,
            "floor_copy.py",
            "--format",
            fmt,
            "--jobs",
            "2",
            "--psql",
            self.tools["psql"],
        )

    def run_method(self, method: str, dataset: str) -> Result:
        runners: dict[str, Callable[[str], Result]] = {
            "ours": self.m_ours,
            "pg_dump|pg_restore": self.m_dump_pipe,
            "dump-dir-j2": self.m_dump_dir,
            "pgcopydb": self.m_pgcopydb,
            "airflow": self.m_airflow,
            "floor-text": lambda d: self.m_floor("text", d),
            "floor-binary": lambda d: self.m_floor("binary", d),
        }
        self.reset_target(create_public=method in ("ours", "pgcopydb"))
        result = runners[method](dataset)
        self.verify(method)
        return result

    # -- memory check -------------------------------------------------------------------------

    def memory_check(self, cap_mb: int, table_mb: int) -> dict[str, Any]:
        rows = table_mb * 1024  # ~1 KiB per row in COPY output
        say(
            f"memory check: public.bench_memory ~{table_mb} MB ({rows} rows), spool cap {cap_mb} MB"
        )
        with self.connect("source") as conn, conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS public.bench_memory")
            cur.execute(
                "CREATE TABLE public.bench_memory (id integer PRIMARY KEY, payload text NOT NULL)"
            )
            cur.execute(
                "INSERT INTO public.bench_memory SELECT i, repeat(md5(i::text), 31) "
                "FROM generate_series(1, %s) AS i",
                (rows,),
            )
            cur.execute("ANALYZE public.bench_memory")
        conn.close()
        self.counts = self.table_counts("source")
        extra = {"PAGILA_SPOOL_MAX_BYTES": str(cap_mb * MB)}
        try:
            self.reset_target()
            self.restart_workers(extra)
            full = subprocess.run(
                [*self.submit_argv(), "replicate", "--json"],
                env=self.env,
                capture_output=True,
                text=True,
            )
            if full.returncode != 0:
                raise RunFailed(
                    "memory check, full replicate: "
                    f"{last_line(full.stdout)} {last_line(full.stderr)}"
                )
            self.restart_workers(extra)
            started = time.monotonic()
            proc = subprocess.Popen(
                [*self.submit_argv(), "replicate", "--tables", "bench_memory", "--json"],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            with RssSampler(self.worker_tree_roots) as sampler:
                out, _err = proc.communicate()
            seconds = time.monotonic() - started
            record = json.loads(out.strip().splitlines()[-1])
            if record.get("state") != "succeeded":
                raise RunFailed(f"memory check: {record.get('state')}: {record.get('error')}")
            unit = record["units"].get("public.bench_memory", {})
            self.verify("ours (memory check)")
            peaks = sampler.by_label()
            worker_peak = max(v for k, v in peaks.items() if k == "celery worker")
            limit = (cap_mb + 100) * MB
            result = {
                "cap_mb": cap_mb,
                "table_bytes": int(unit.get("bytes", 0)),
                "rows": int(unit.get("rows", 0)),
                "spilled": bool(unit.get("spilled")),
                "worker_peak_rss": worker_peak,
                "limit": limit,
                "peaks": peaks,
                "seconds": round(seconds, 2),
                "ok": bool(unit.get("spilled")) and worker_peak <= limit,
            }
        finally:
            with self.connect("source") as conn, conn.cursor() as cur:
                cur.execute("DROP TABLE IF EXISTS public.bench_memory")
            conn.close()
            self.reset_target()
        say(
            f"  copied {result['table_bytes'] / MB:.0f} MB ({result['rows']} rows) in "
            f"{result['seconds']} s; spilled={result['spilled']}; largest worker process peak RSS "
            f"{worker_peak / MB:.0f} MB vs cap + 100 MB = {limit / MB:.0f} MB: "
            f"{'OK' if result['ok'] else 'OVER'}"
        )
        return result

    # -- machine ------------------------------------------------------------------------------

    def machine(self) -> dict[str, Any]:
        with self.connect("source") as conn, conn.cursor() as cur:
            cur.execute("SELECT version()")
            version = cur.fetchone()[0]
            settings = {}
            for name in SHOWN_SETTINGS:
                cur.execute(sql.SQL("SHOW {}").format(sql.Identifier(name)))
                settings[name] = cur.fetchone()[0]
        conn.close()
        cpu = "?"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        mem = 0
        with contextlib.suppress(OSError, ValueError, IndexError):
            mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
        pgcopydb = shutil.which("pgcopydb")
        pgcopydb_version = "-"
        if pgcopydb:
            out = subprocess.run([pgcopydb, "--version"], capture_output=True, text=True).stdout
            found = re.search(r"pgcopydb version (\S+)", out)
            pgcopydb_version = found.group(1) if found else "?"
        tool = subprocess.run(
            [self.tools["pg_dump"], "--version"], capture_output=True, text=True
        ).stdout
        return {
            "nproc": os.cpu_count(),
            "cpu": cpu,
            "memory_gb": round(mem / 1024**3, 1),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "postgres": version.split(" on ")[0],
            "pg_dump": tool.strip(),
            "pgcopydb": pgcopydb_version,
            "servers": self.stack.status().get("servers"),
            "settings": settings,
        }


# -- reporting ----------------------------------------------------------------------------------


def summarize(
    results: list[Result],
    failures: dict[tuple[str, str], str],
    methods: list[str],
    datasets: list[str],
) -> list[dict[str, Any]]:
    rows = []
    for ds in datasets:
        group = [r for r in results if r.dataset == ds]
        med = {}
        for m in methods:
            times = [r.seconds for r in group if r.method == m]
            if times:
                med[m] = statistics.median(times)
        base = med.get("pgcopydb")
        for m in methods:
            runs = [r for r in group if r.method == m]
            if not runs:
                rows.append({"method": m, "dataset": ds, "na": failures.get((m, ds), "not run")})
                continue
            rows.append(
                {
                    "method": m,
                    "dataset": ds,
                    "median": med[m],
                    "times": [round(r.seconds, 2) for r in runs],
                    "ratio": (med[m] / base) if base else None,
                    "peak_rss": max(r.peak_rss for r in runs),
                    "peak_proc": max(runs, key=lambda r: r.peak_rss).peak_proc,
                    "spilled": max(r.spilled for r in runs),
                    "failed": failures.get((m, ds)),
                }
            )
    return rows


def table_text(rows: list[dict[str, Any]]) -> str:
    head = ["method", "dataset", "median s", "vs pgcopydb", "peak RSS MB", "spilled MB", "runs (s)"]
    body = []
    for r in rows:
        if "na" in r:
            body.append([r["method"], r["dataset"], "n/a", "n/a", "n/a", "n/a", r["na"]])
            continue
        body.append(
            [
                r["method"],
                r["dataset"],
                f"{r['median']:.2f}",
                f"{r['ratio']:.2f}x" if r["ratio"] else "n/a",
                f"{r['peak_rss'] / MB:.0f} ({r['peak_proc']})",
                f"{r['spilled'] / MB:.1f}",
                ", ".join(f"{t:.2f}" for t in r["times"])
                + (f"; FAILED: {r['failed']}" if r.get("failed") else ""),
            ]
        )
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines)


def steps_text(steps: list[dict[str, Any]], seconds: float) -> str:
    """The STEP timeline of one of our runs, with the gap to the next line.

    The per-unit ``copied`` lines are folded into one line: when the last copy ended.
    """
    copies = [s for s in steps if s["msg"].startswith("copied ")]
    steps = [s for s in steps if not s["msg"].startswith("copied ")]
    if copies:
        last = max(copies, key=lambda s: s["t"])
        steps.append({**last, "msg": f"last of {len(copies)} copies committed"})
        steps.sort(key=lambda s: s["t"])
    out = []
    for i, s in enumerate(steps):
        nxt = steps[i + 1]["t"] if i + 1 < len(steps) else seconds
        out.append(f"    {s['t']:7.2f} s  (+{nxt - s['t']:6.2f})  {s['worker']}  {s['msg']}")
    out.append(f"    {seconds:7.2f} s  pagila-submit returned")
    return "\n".join(out)


def rewrite_section(text: str, start: str, end: str, body: str) -> str:
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        return text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    return text.rstrip() + "\n\n" + block + "\n"


def write_docs(section: str, start: str, end: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    DOCS.write_text(rewrite_section(text, start, end, section))
    say(f"wrote {DOCS.relative_to(ROOT)}")


def machine_text(m: dict[str, Any], command: str) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in m["settings"].items())
    return (
        f"- command: `{command}` ({datetime.now().strftime('%Y-%m-%d %H:%M')})\n"
        f"- machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gb']} GB RAM, "
        f"Linux {m['kernel']}, "
        f"Python {m['python']}\n"
        f"- servers ({m['servers']}): {m['postgres']}, both on this machine; {settings}\n"
        f"- tools: {m['pg_dump']}; pgcopydb {m['pgcopydb']}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=50, help="scale factor of the large dataset")
    parser.add_argument(
        "--scales",
        help="comma list of scale factors, e.g. 1,10,50 (overrides --scale; default 1,<scale>)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}"
    )
    parser.add_argument("--memory", action="store_true", help="run only the spool-cap memory check")
    parser.add_argument("--memory-cap-mb", type=int, default=32)
    parser.add_argument("--memory-table-mb", type=int, default=150)
    parser.add_argument(
        "--state-dir",
        default=os.environ.get("BENCH_STATE_DIR")
        or str(Path(tempfile.gettempdir()) / "pagila-bench"),
    )
    parser.add_argument("--servers", default=os.environ.get("PAGILA_STACK_SERVERS", "auto"))
    parser.add_argument(
        "--sql-dir",
        default=os.environ.get("PAGILA_SQL_DIR")
        or (
            str(ROOT.parent / "shared" / "pagila")
            if (ROOT.parent / "shared" / "pagila").is_dir()
            else None
        ),
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--json-out", help="also write every run's raw result to this file")
    args = parser.parse_args(argv)
    command = "python bench/run.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    scales = sorted({int(x) for x in (args.scales or f"1,{args.scale}").split(",") if x.strip()})
    if any(n < 1 or n > 20000 for n in scales):
        parser.error("scales must be between 1 and 20000")

    bench = Bench(args)
    results: list[Result] = []
    failures: dict[tuple[str, str], str] = {}
    datasets: list[str] = []
    dataset_info: list[dict[str, Any]] = []
    try:
        bench.up()
        bench.load()
        machine = bench.machine()
        if args.memory:
            mem = bench.memory_check(args.memory_cap_mb, args.memory_table_mb)
            if not args.no_docs:
                write_docs(memory_text(mem, machine, command), MEMORY_START, MEMORY_END)
            return 0 if mem["ok"] else 1
        for n in scales:
            info = bench.scale(n)
            ds = f"x{n}"
            datasets.append(ds)
            dataset_info.append(info)
            for run in range(args.runs):
                order = methods[run % len(methods) :] + methods[: run % len(methods)]
                for m in order:
                    if (m, ds) in failures and failures[(m, ds)].startswith("n/a"):
                        continue
                    try:
                        r = bench.run_method(m, ds)
                    except NotAvailable as exc:
                        failures[(m, ds)] = f"n/a: {exc}"
                        say(f"  {ds} run {run + 1} {m:20s} n/a: {exc}")
                        continue
                    except RunFailed as exc:
                        failures[(m, ds)] = str(exc)
                        say(f"  {ds} run {run + 1} {m:20s} FAILED: {exc}")
                        continue
                    results.append(r)
                    say(
                        f"  {ds} run {run + 1} {m:20s} {r.seconds:8.2f} s  peak RSS "
                        f"{r.peak_rss / MB:6.0f} MB ({r.peak_proc})  "
                        f"spilled {r.spilled / MB:7.1f} MB"
                    )
                    if m == "ours":
                        say(steps_text(r.detail["steps"], r.seconds))
    finally:
        try:
            bench.down()
        except Exception as exc:  # keep the results even if the stack does not stop cleanly
            say(f"stack down failed: {exc}")
        if args.json_out:
            Path(args.json_out).write_text(
                json.dumps([r.__dict__ for r in results], indent=1, default=str)
            )
    rows = summarize(results, failures, methods, datasets)
    say("\n" + table_text(rows))
    ours_text = ours_breakdown(results, datasets)
    say("\n" + ours_text)
    if not args.no_docs:
        write_docs(
            results_text(rows, dataset_info, machine, command, ours_text),
            RESULTS_START,
            RESULTS_END,
        )
    return 1 if any(not v.startswith("n/a") for v in failures.values()) else 0


def ours_breakdown(results: list[Result], datasets: list[str]) -> str:
    """Where our time goes: the STEP timeline and units of the median run of each dataset."""
    parts = []
    for ds in datasets:
        runs = sorted(
            (r for r in results if r.method == "ours" and r.dataset == ds), key=lambda r: r.seconds
        )
        if not runs:
            continue
        r = runs[len(runs) // 2]
        units = r.detail["units"]
        unit_lines = "\n".join(
            f"    {name:32s} {u.get('rows') or 0:>9} rows {int(u.get('bytes') or 0) / MB:8.1f} MB "
            f"{float(u.get('seconds') or 0):7.2f} s  {u.get('worker') or ''}  "
            f"spilled={u.get('spilled')}"
            for name, u in sorted(units.items(), key=lambda kv: -float(kv[1].get("seconds") or 0))[
                :12
            ]
        )
        copy_sum = sum(float(u.get("seconds") or 0) for u in units.values())
        per_worker: dict[str, float] = {}
        for u in units.values():
            w = str(u.get("worker") or "?").split("@")[0]
            per_worker[w] = per_worker.get(w, 0.0) + float(u.get("seconds") or 0)
        balance = ", ".join(f"{w} {v:.2f} s" for w, v in sorted(per_worker.items()))
        to_audit = statistics.median(x.detail["lock_to_audit"] for x in runs)
        parts.append(
            f"ours, {ds}: lock to audit row {to_audit:.2f} s (median of {len(runs)} runs; "
            "the target's measure, without the submit script's start and exit)\n"
            f"ours, {ds}, median run ({r.seconds:.2f} s, {len(units)} units, "
            f"{copy_sum:.2f} s of copy work over 2 workers: {balance}):\n"
            "  timeline (seconds since pagila-submit started):\n"
            f"{steps_text(r.detail['steps'], r.seconds)}\n"
            f"  slowest units:\n{unit_lines}"
        )
    return "\n\n".join(parts)


def results_text(
    rows: list[dict[str, Any]],
    datasets: list[dict[str, Any]],
    machine: dict[str, Any],
    command: str,
    ours_text: str,
) -> str:
    ds_lines = "\n".join(
        f"- x{d['scale']}: {d['bytes'] / MB:.0f} MB of tables and indexes in `public`, "
        f"{d['rows']} rows; "
        f"rental {d['rental']}, inventory {d['inventory']}, payment partitions "
        f"{d['payment_parts'][0]}..{d['payment_parts'][1]} rows each"
        for d in datasets
    )
    return (
        "## Results\n\n"
        "Written by `bench/run.py`; do not edit by hand.\n\n"
        f"{machine_text(machine, command)}\n"
        f"Datasets:\n\n{ds_lines}\n\n"
        f"{table_text(rows)}\n\n"
        "Peak RSS is the largest client-side process (its VmHWM), named in brackets; server "
        "backends are not counted. Spilled is what the method wrote to local disk (our and the "
        "Airflow spools past their cap, the dump directory, pgcopydb's work folder).\n\n"
        "### Where our time goes\n\n"
        f"```\n{ours_text}\n```\n"
    )


def memory_text(mem: dict[str, Any], machine: dict[str, Any], command: str) -> str:
    peaks = ", ".join(f"{k} {v / MB:.0f} MB" for k, v in sorted(mem["peaks"].items()))
    return (
        "## Memory check\n\n"
        "Written by `bench/run.py --memory`; do not edit by hand.\n\n"
        f"{machine_text(machine, command)}\n"
        f"- one table, `public.bench_memory`: {mem['rows']} rows, "
        f"{mem['table_bytes'] / MB:.0f} MB of "
        f"COPY data, replicated with `pagila-submit replicate --tables bench_memory` and "
        f"`PAGILA_SPOOL_MAX_BYTES` = {mem['cap_mb']} MB, workers restarted just before\n"
        f"- spilled to disk: {mem['spilled']}; {mem['seconds']} s\n"
        f"- largest worker process peak RSS: {mem['worker_peak_rss'] / MB:.0f} MB; "
        "limit cap + 100 MB = "
        f"{mem['limit'] / MB:.0f} MB: **{'OK' if mem['ok'] else 'OVER'}**\n"
        f"- every process of the worker trees: {peaks}\n"
    )


if __name__ == "__main__":
    sys.exit(main())
