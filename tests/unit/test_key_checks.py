"""How a foreign key's check joins its two tables (:func:`.fkeys.probes_cheaper`)."""

from __future__ import annotations

from pagila_tasks.replication.fkeys import PROBE_RATIO, probes_cheaper

MB = 1 << 20
CACHE = 4096 * MB
"""PostgreSQL's default ``effective_cache_size``."""
TABLE = 200 * MB
"""A referenced table and its unique index, well inside the cache."""


def test_a_small_table_pointing_at_a_large_one_probes_its_index() -> None:
    assert probes_cheaper(271_300, 1_604_400, TABLE, CACHE)  # payment_p2022_03, rental (x100)
    assert probes_cheaper(0, PROBE_RATIO, MB, CACHE)  # no rows to check: probing reads least


def test_a_large_table_pointing_at_a_small_one_hashes_it() -> None:
    assert not probes_cheaper(1_604_400, 458_100, 40 * MB, CACHE)  # rental and inventory at x100
    assert not probes_cheaper(1_000, PROBE_RATIO * 1_000 - 1, MB, CACHE)


def test_a_table_never_counted_leaves_the_plan_to_the_server() -> None:
    assert not probes_cheaper(-1, 1_604_400, TABLE, CACHE)
    assert not probes_cheaper(100, -1, MB, CACHE)


def test_a_referenced_table_larger_than_the_cache_leaves_the_plan_to_the_server() -> None:
    """Beyond ``effective_cache_size`` a probe may be a read from disk: the hash stays."""
    assert not probes_cheaper(271_300, 1_604_400, CACHE + 1, CACHE)
    assert probes_cheaper(271_300, 1_604_400, CACHE, CACHE)
