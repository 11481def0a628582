"""The proof's verdict (pure), the plan that carries it, and how a run shows it."""

from __future__ import annotations

from pagila_tasks.cli import render
from pagila_tasks.replication.proof import Side, judge
from pagila_tasks.run.model import ReplicationPlan, Run, RunState
from pagila_tasks.run.plan import Unit

TABLES = {"public.a": (3, "h:1"), "public.b": (0, "h:0"), "large objects": (1, "lo:9")}
SEQS = {("public", "a_id_seq"): (3, True)}


def test_equal_sides_are_unchanged_and_say_what_was_proven() -> None:
    target = Side(dict(TABLES), dict(SEQS), taken=frozenset({"public.a", "public.b"}))
    unchanged, reason, checks = judge("r1", Side(TABLES, SEQS), target)
    assert unchanged
    assert "3 tables equal by count and checksum (0 on the source and 2 on the target" in reason
    assert "1 sequences" in reason and "run r1" in reason
    assert [c.table for c in checks] == list(TABLES) and all(c.ok for c in checks)


def test_a_checksum_a_count_or_a_missing_table_differs() -> None:
    for changed in (
        {"public.a": (3, "h:2")},
        {"public.b": (1, "h:0")},
        {"large objects": (0, "lo:0")},
    ):
        target = Side(TABLES | changed, SEQS)
        unchanged, reason, _ = judge("r1", Side(TABLES, SEQS), target)
        assert not unchanged and next(iter(changed)) in reason, reason
    missing = {k: v for k, v in TABLES.items() if k != "public.b"}
    assert not judge("r1", Side(TABLES, SEQS), Side(missing, SEQS))[0]


def test_something_only_the_target_has_differs() -> None:
    """Large objects the source has none of, an extra sequence: the live copy is not the source."""
    extra = Side(TABLES | {"public.c": (0, "h:0")}, SEQS)
    unchanged, reason, _ = judge("r1", Side(TABLES, SEQS), extra)
    assert not unchanged and "public.c" in reason
    more = Side(TABLES, SEQS | {("public", "b_id_seq"): (1, False)})
    assert not judge("r1", Side(TABLES, SEQS), more)[0]


def test_a_moved_sequence_differs() -> None:
    unchanged, reason, _ = judge(
        "r1", Side(TABLES, SEQS), Side(TABLES, {("public", "a_id_seq"): (4, True)})
    )
    assert not unchanged and "public.a_id_seq" in reason


def test_many_differences_are_counted_not_all_named() -> None:
    source = {f"public.t{i}": (i, f"h:{i}") for i in range(9)}
    target = {name: (rows, "h:x") for name, (rows, _) in source.items()}
    unchanged, reason, _ = judge("r1", Side(source), Side(target))
    assert not unchanged and reason.startswith("9 of 9 tables differ") and "and 4 more" in reason


def _plan(**changes: object) -> ReplicationPlan:
    base = {
        "schemas": ("public",),
        "swap": True,
        "targets": {"public": "pagila_stage_x"},
        "units": (Unit("public", "a", ("id",)),),
        "table_keys": (("public", "a"),),
    }
    return ReplicationPlan(**(base | changes))  # type: ignore[arg-type]


def test_the_plan_keeps_the_proof_through_json() -> None:
    plan = _plan(
        units=(),
        unchanged=True,
        reason="the live copy holds the source",
        proven=(("public.a", 3, 3, "h:1", "h:1"),),
        fingerprint="ab" * 32,
    )
    again = ReplicationPlan.from_json(plan.as_json())
    assert again == plan
    assert again.tables == ["public.a"]  # no units, yet the table is the run's


def test_the_plan_line_says_how_much_is_copied_and_why() -> None:
    copying = Run("r2", "replicate", RunState.RUNNING, plan=_plan(reason="--full copies"))
    assert render.plan_line(copying) == "plan: copies 1 units of 1 tables: --full copies"
    kept = _plan(units=(), unchanged=True, reason="equal", proven=(("public.a", 3, 3, "h", "h"),))
    line = render.plan_line(Run("r3", "replicate", RunState.RUNNING, plan=kept))
    assert line == "plan: copies nothing of 1 tables: equal"
    assert render.plan_line(Run("r4", "replicate", RunState.QUEUED)) is None


def test_a_reused_unit_says_which_run_copied_it() -> None:
    from pagila_tasks.run.model import UnitProgress

    line = render.unit_line("public.rental#1of8", UnitProgress("reused", rows=5, origin="r1"))
    assert "reused" in line and line.endswith("from r1"), line
