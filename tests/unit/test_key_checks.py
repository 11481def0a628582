"""How a foreign key's check joins its two tables (:func:`.fkeys.probes_cheaper`)."""

from __future__ import annotations

from pagila_tasks.replication.fkeys import PROBE_RATIO, probes_cheaper


def test_a_small_table_pointing_at_a_large_one_probes_its_index() -> None:
    assert probes_cheaper(271_300, 1_604_400)  # a payment partition and rental at x100
    assert probes_cheaper(0, PROBE_RATIO)  # nothing to check: any plan, probing reads least


def test_a_large_table_pointing_at_a_small_one_hashes_it() -> None:
    assert not probes_cheaper(1_604_400, 458_100)  # rental and inventory at x100
    assert not probes_cheaper(1_000, PROBE_RATIO * 1_000 - 1)


def test_a_table_never_counted_leaves_the_plan_to_the_server() -> None:
    assert not probes_cheaper(-1, 1_604_400)
    assert not probes_cheaper(100, -1)
