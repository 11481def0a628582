"""`make bench`: the benchmark, one module per job.

- ``run.py``: the steps in order (what ``make bench`` runs);
- ``stack.py``: the benchmark's own stack, its server settings, workers and environment;
- ``data.py``: the dataset: Pagila loaded, scaled (``scale.sql``), counted, the target reset;
- ``wide.py``: ``--wide-gb``'s dataset: the smallest scale plus a wide-row table (``wide.sql``);
- ``methods.py``: the methods compared, one function each, in one table;
- ``ours.py``: this project's replication measured (submit, STEP lines, lock to audit row);
- ``kept.py``: the 30 target-side objects of ``ours-kept``, built and counted;
- ``memory.py``: the spool-cap memory check;
- ``measuring.py``: a command run to its end with the peak memory of its processes;
- ``results.py``: what a run yields; ``machine.py``: facts about the machine and servers;
- ``reporting.py``: every text printed or written into docs/benchmarks.md.

``airflow_copy.py`` and ``floor_copy.py`` (with ``pgschema.py``) stay plain scripts: they are
measured as subprocesses and their file names label their peak memory in the table;
``spool_vs_stream.py`` is run by hand (docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The checkout: the bench's scripts, docs/benchmarks.md and the worker code come from here."""
BENCH = ROOT / "bench"
MB = 1024 * 1024


def say(text: str) -> None:
    """Print a progress line at once (the benchmark runs for minutes)."""
    print(text, flush=True)
