"""`make demo`: the main job on a local stack, then the stack comes down (KEEP=1 keeps it).

Stack up (source, target, Redis, two workers, Flower) -> `pagila-submit run` (load Pagila into
the source, replicate it to the target, print the verification table) -> stack down.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    """Run the demo; the exit code is pagila-submit's (or the stack's on a failed start)."""
    state = Path(os.environ.get("PAGILA_STACK_DIR") or ROOT / ".stack")
    stack = [sys.executable, "-m", "pagila_stack.cli"]
    keep = os.environ.get("KEEP") == "1"
    shared = ROOT.parent / "shared" / "pagila"
    if not os.environ.get("PAGILA_SQL_DIR") and shared.is_dir():
        os.environ["PAGILA_SQL_DIR"] = str(shared)  # else the workers download the pinned files
    up = subprocess.run(
        [*stack, "up", "--workers", "2", "--flower", "--state", str(state)], check=False
    )
    if up.returncode != 0:
        return up.returncode
    try:
        from pagila_stack.stack import Stack

        env = {**os.environ, **Stack(state).env()}
        run = subprocess.run(
            [sys.executable, "-m", "pagila_tasks.cli.submit", "run"], env=env, check=False
        )
        return run.returncode
    finally:
        if keep:
            print(
                f"KEEP=1: the stack keeps running; `pagila-stack status --state {state}`, "
                f"`pagila-stack down --state {state}` to stop it."
            )
        else:
            subprocess.run([*stack, "down", "--state", str(state)], check=False)


if __name__ == "__main__":
    sys.exit(main())
