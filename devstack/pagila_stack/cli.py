"""``pagila-stack up|down|status|env``: the local stack from the command line.

Exit status 0 on success, 2 on a :class:`StackError` or other project error (one line on
stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from pagila_stack import StackError
from pagila_stack.stack import Stack
from pagila_tasks.base.errors import PagilaError
from pagila_tasks.config import stack_settings

MAX_WORKERS = 32
"""The most workers ``up --workers`` starts: each is a Celery process with a pool and two warm
database connections, so a typo (``--workers 200``) would swamp a dev machine and both servers."""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state",
        type=Path,
        default=argparse.SUPPRESS,
        help="state folder (default: $PAGILA_STACK_DIR or ./.stack)",
    )
    parser = argparse.ArgumentParser(
        prog="pagila-stack",
        parents=[common],
        description="Run the Pagila source/target PostgreSQL, Redis, Celery workers and Flower "
        "locally. Servers come from PAGILA_STACK_SERVERS=auto|system|embedded.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", parents=[common], help="start what is not running")
    up.add_argument(
        "--workers", type=int, default=2, help=f"Celery workers, 0 to {MAX_WORKERS} (default 2)"
    )
    up.add_argument("--flower", action="store_true", help="also run Flower (read-only)")
    up.add_argument("--beat", action="store_true", help="also run one Celery beat (scheduled runs)")
    down = sub.add_parser("down", parents=[common], help="stop everything")
    down.add_argument("--purge", action="store_true", help="also delete data and secrets")
    status = sub.add_parser("status", parents=[common], help="show services")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("env", parents=[common], help="print export lines for the shell")
    return parser


def _print_status(report: dict) -> None:
    print(f"state: {report['state_dir']}  servers: {report['servers'] or '-'}")
    print(f"{'service':<10} {'pid':>8} {'port':>6}  alive")
    for name, svc in report["services"].items():
        pid = svc["pid"] if svc["pid"] is not None else "-"
        port = svc["port"] if svc["port"] is not None else "-"
        print(f"{name:<10} {pid!s:>8} {port!s:>6}  {'yes' if svc['alive'] else 'no'}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pagila-stack`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "up" and not 0 <= args.workers <= MAX_WORKERS:
            raise StackError(f"--workers must be from 0 to {MAX_WORKERS}, got {args.workers}")
        settings = stack_settings()
        state_dir = getattr(args, "state", None) or settings.state_dir
        stack = Stack(state_dir, servers=settings.servers, echo=print)
        if args.command == "up":
            stack.up(workers=args.workers, flower=args.flower, beat=args.beat)
            print(f'ready: eval "$(pagila-stack env --state {shlex.quote(str(state_dir))})"')
        elif args.command == "down":
            stack.down(purge=args.purge)
        elif args.command == "status":
            report = stack.status()
            if args.json:
                print(json.dumps(report, indent=2))
            else:
                _print_status(report)
        elif args.command == "env":
            for key, value in stack.env().items():
                print(f"export {key}={shlex.quote(value)}")
    except PagilaError as exc:
        print(f"pagila-stack: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
