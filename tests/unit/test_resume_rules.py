"""When a staging copy may be resumed (pure), and how a resumed run names what it reused."""

from __future__ import annotations

from dataclasses import replace

from pagila_tasks.config import from_env
from pagila_tasks.replication.resume import (
    Resumed,
    Staged,
    refusal,
    units_json,
    whole_tables,
)
from pagila_tasks.run.model import Run, RunState, UnitProgress
from pagila_tasks.run.plan import Unit, reused_whole

UNITS = (
    Unit("public", "rental", ("rental_id",), 0, 2, "rental_id", None, 100),
    Unit("public", "rental", ("rental_id",), 1, 2, "rental_id", 100, None),
    Unit("public", "actor", ("actor_id",)),
)
STAGED = Staged(
    run_id="r1",
    fingerprint="f" * 64,
    units=UNITS,
    age_s=60.0,
    finishing=False,
    committed={"public.rental#1of2": ("r1", 99)},
)
S = from_env({"PAGILA_SOURCE_DSN": "postgresql://a@h/s", "PAGILA_TARGET_DSN": "postgresql://b@h/t"})


def test_a_fresh_staging_copy_of_the_same_schema_is_resumed() -> None:
    assert refusal(STAGED, "f" * 64, S, swap=True, whole=True, full=False) is None


def test_each_rule_refuses_with_its_reason() -> None:
    cases = {
        "PAGILA_RESUME=0": (STAGED, replace(S, resume=False), True, True, False),
        "--full": (STAGED, S, True, True, True),
        "whole swap": (STAGED, S, False, True, False),
        "changed": (replace(STAGED, fingerprint="e" * 64), S, True, True, False),
        "PAGILA_RESUME_MAX_AGE": (replace(STAGED, age_s=1e9), S, True, True, False),
        "post-data": (replace(STAGED, finishing=True), S, True, True, False),
        "no unit": (replace(STAGED, committed={}), S, True, True, False),
    }
    for words, (staged, s, swap, whole, full) in cases.items():
        why = refusal(staged, "f" * 64, s, swap=swap, whole=whole, full=full)
        assert why is not None and words in why, (words, why)
    assert refusal(STAGED, "f" * 64, S, swap=True, whole=False, full=False)


def test_the_plan_travels_as_the_units_it_was() -> None:
    import json

    assert tuple(Unit.from_args(u) for u in json.loads(units_json(list(UNITS)))) == UNITS


def test_the_reason_counts_reused_and_copied_units() -> None:
    resumed = Resumed("r1", UNITS, {"public.rental#1of2": ("r1", 99)})
    assert resumed.reason == (
        "resumes the staging copy of run r1: 1 of 3 units reused (count and checksum equal "
        "at this snapshot), 2 to copy"
    )


def test_how_each_table_was_built() -> None:
    units = {
        "public.rental#1of2": UnitProgress("reused", "public.rental", origin="r1"),
        "public.rental#2of2": UnitProgress("done", "public.rental"),
        "public.actor": UnitProgress("reused", "public.actor", origin="r1"),
        "public.film": UnitProgress("done", "public.film"),
    }
    run = Run("r2", "replicate", RunState.RUNNING, units=units)
    assert run.how_built() == {
        "public.rental": "ranges copied 1/2, rest from r1",
        "public.actor": "reused from r1",
        "public.film": "copied",
    }


def test_a_table_whose_every_unit_was_reused_is_verified_from_their_measures() -> None:
    """Both of rental's ranges reused: its count and checksum are theirs summed (a checksum is
    a sum of row hashes); actor, copied again, is left to verification; a table whose ranges'
    checksums differ in method is measured as usual; a block-split table has its own measure."""
    measures = {"public.rental#1of2": (99, "h:10"), "public.rental#2of2": (1, "h:-3")}
    reused = {"public.rental#1of2", "public.rental#2of2"}
    assert whole_tables(UNITS, reused, measures) == {"public.rental": (100, "h:7")}
    assert whole_tables(UNITS, {"public.rental#1of2"}, measures) == {}
    mixed = measures | {"public.rental#2of2": (1, "t:-3")}
    assert whole_tables(UNITS, reused, mixed) == {}
    blocks = tuple(
        Unit("public", "log", ("a",), i, 2, "ctid", i * 10, i * 10 + 10, by_block=True)
        for i in range(2)
    )
    assert whole_tables(blocks, {u.name for u in blocks}, {"public.log": (5, "h:1")}) == {
        "public.log": (5, "h:1")
    }


def test_a_table_is_reused_whole_only_when_none_of_its_units_is_copied_again() -> None:
    assert reused_whole(tuple(UNITS), {u.name for u in UNITS}) == {"public.rental", "public.actor"}
    assert reused_whole(tuple(UNITS), {"public.rental#1of2", "public.actor"}) == {"public.actor"}
    assert reused_whole(tuple(UNITS), set()) == set()


def test_only_a_table_reused_whole_with_indexes_to_build_gets_a_build_of_its_own() -> None:
    """A resumed run's reused table is built by a task of its own (no copy completes it), when
    it has indexes to build early; a table with a range copied again is built by that copy."""
    from pagila_tasks.replication.indexes import of_reused
    from pagila_tasks.run.model import ReplicationPlan

    plan = ReplicationPlan(
        schemas=("public",),
        swap=True,
        targets={"public": "stage"},
        units=UNITS,
        table_keys=(),
        reused=("public.rental#1of2", "public.actor"),
        indexes={"public.rental": ("CREATE INDEX ...",), "public.actor": ("ALTER TABLE ...",)},
    )
    assert of_reused(plan) == ["public.actor"]  # rental's second range is copied again
    assert of_reused(replace(plan, reused=(*plan.reused, "public.rental#2of2"))) == [
        "public.actor",
        "public.rental",
    ]
    assert of_reused(replace(plan, indexes={"public.rental": ()})) == []
