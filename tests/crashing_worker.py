"""A real worker that dies (SIGKILL of its pool process) whenever it copies one chosen table.

``python -m tests.crashing_worker TABLE <celery worker args>``: the poison-message fault. The crash
is injected here, in the test's worker process, not in the package.
"""

from __future__ import annotations

import os
import signal
import sys

from pagila_tasks.app import app
from pagila_tasks.replication import copy


def main() -> None:
    poison = sys.argv[1]
    original = copy.copy_table

    def crashing(s, unit, *args, **kwargs):  # type: ignore[no-untyped-def]
        if f"{unit.schema}.{unit.table}" == poison:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(s, unit, *args, **kwargs)

    copy.copy_table = crashing
    app.worker_main(["worker", *sys.argv[2:]])


if __name__ == "__main__":
    main()
