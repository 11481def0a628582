"""Pure planning: units, splits, order and the refusal of names that are not tables."""

from __future__ import annotations

import itertools

import pytest

from pagila_tasks.base.errors import UsageError
from pagila_tasks.replication.copy import statements
from pagila_tasks.run.plan import (
    MAX_PARTS,
    MAX_ROW_PARTS,
    Table,
    Unit,
    parse_table_list,
    parts,
    plan_units,
    resolve_selection,
    split_ranges,
    tables_to_split,
)


def t(name: str, rows: int = 10, size: int = 100, key: str | None = "id") -> Table:
    return Table("public", name, rows, size, ("id", "v"), key)


def test_one_unit_per_table_largest_first() -> None:
    """Small tables are one unit each, the biggest first."""
    units = plan_units([t("a", size=1), t("b", size=50), t("c", size=10)], split_rows=1000)
    assert [u.table for u in units] == ["b", "c", "a"]
    assert all(u.part is None and u.key is None for u in units)


def test_large_table_splits_into_covering_ranges() -> None:
    """A table over the threshold becomes key ranges covering every key, open at both ends."""
    units = plan_units(
        [t("big", rows=1000, size=9)], split_rows=300, key_spans={"public.big": (1, 1000)}
    )
    assert len(units) == 4
    assert units[0].lo is None and units[-1].hi is None
    for a, b in itertools.pairwise(units):
        assert a.hi == b.lo
    assert units[0].name == "public.big#1of4"
    for key in (-5, 1, 250, 251, 999, 1000, 10**9):
        assert (
            sum(1 for u in units if (u.lo is None or key >= u.lo) and (u.hi is None or key < u.hi))
            == 1
        )


def test_no_split_without_integer_key_or_when_disabled() -> None:
    """Tables without a single integer key, or with splitting off, stay whole."""
    assert len(plan_units([t("nokey", rows=10**6, key=None)], split_rows=10)) == 1
    assert (
        len(plan_units([t("big", rows=10**6)], split_rows=0, key_spans={"public.big": (1, 10)}))
        == 1
    )
    assert split_ranges(5, 5, 4) == [(None, None)]


def test_unit_round_trips_through_task_arguments() -> None:
    """A unit survives the JSON-friendly form carried in task arguments."""
    u = Unit("s", "t", ("a", "b"), 1, 3, "a", 10, 20)
    assert Unit.from_args(u.as_args()) == u


def test_selection_refuses_what_is_not_a_plain_table() -> None:
    """Unknown names, views and sequences are refused; a partitioned parent means its leaves."""
    kinds = {
        ("public", "rental"): "r",
        ("public", "payment"): "p",
        ("public", "film_list"): "v",
        ("public", "payment_p1"): "r",
        ("public", "actor_actor_id_seq"): "S",
    }
    leaves = {("public", "payment"): [("public", "payment_p1")]}
    assert resolve_selection(["rental", "public.payment"], ("public",), kinds, leaves) == [
        ("public", "rental"),
        ("public", "payment_p1"),
    ]
    for bad, words in (
        ("nope", "unknown table"),
        ("film_list", "a view"),
        ("actor_actor_id_seq", "a sequence"),
        ("other.rental", "unknown table"),
    ):
        with pytest.raises(UsageError, match=words):
            resolve_selection([bad], ("public",), kinds, leaves)


def test_table_list_parsing() -> None:
    """--tables: None means all; an empty list or an empty name is refused."""
    assert parse_table_list(None) is None
    assert parse_table_list("a, b") == ["a", "b"]
    for bad in ("", ",", "a,,b", " "):
        with pytest.raises(UsageError):
            parse_table_list(bad)


def test_a_table_without_binary_io_goes_as_text_in_every_part() -> None:
    """A table whose types binary COPY cannot carry is copied as text, each key range too; the
    others keep the configured format."""
    odd = Table("public", "odd", 1000, 9, ("id", "code"), "id", text_only=True)
    units = plan_units([odd, t("plain")], split_rows=300, key_spans={"public.odd": (1, 1000)})
    assert {u.text_only for u in units if u.table == "odd"} == {True}
    assert [u.text_only for u in units if u.table == "plain"] == [False]
    for u in units:
        st = statements(u, "binary")
        fmt = "SQL('text')" if u.text_only else "SQL('binary')"
        assert fmt in repr(st.copy_out) and fmt in repr(st.copy_in), (u.name, st)


def test_a_large_table_without_an_integer_key_splits_by_heap_blocks_in_swap_runs() -> None:
    """Without a single integer key, a table over the threshold is cut into block ranges
    (``ctid``) covering every block, open at both ends; only when asked (swap runs), and never
    into more parts than it has blocks."""
    big = Table("public", "notes", 1000, 9 * 8192, ("id", "v"), None, blocks=9)
    units = plan_units([big], split_rows=300, by_block=True)
    assert [u.name for u in units] == [f"public.notes#{i}of4" for i in range(1, 5)]
    assert all(u.by_block and u.key == "ctid" for u in units)
    assert units[0].lo is None and units[-1].hi is None
    for a, b in itertools.pairwise(units):
        assert a.hi == b.lo and a.hi is not None and 0 < a.hi <= 9
    assert plan_units([big], split_rows=300) == [Unit("public", "notes", ("id", "v"))]
    two_blocks = Table("public", "n", 1000, 2 * 8192, ("id",), None, blocks=2)
    assert len(plan_units([two_blocks], split_rows=10, by_block=True)) == 2
    never_analyzed = Table("public", "n", -1, 9 * 8192, ("id",), None, blocks=9)
    assert len(plan_units([never_analyzed], split_rows=10, by_block=True)) == 1


def test_a_table_stored_above_the_byte_rule_splits_whatever_its_row_count() -> None:
    """Wide rows: a table of few rows but many bytes (heap and TOAST) is split by the byte
    rule, by key ranges or by blocks, never past MAX_PARTS or its blocks; a table under both
    rules, or with both rules off, stays whole; the larger of the two rules wins."""
    mb = 1 << 20
    wide = Table(
        "public", "w", 1000, 64 * mb, ("id", "v"), None, blocks=8192, stored_bytes=900 * mb
    )
    assert parts(wide, split_rows=400_000, split_bytes=256 * mb) == 4
    units = plan_units([wide], split_rows=400_000, by_block=True, split_bytes=256 * mb)
    assert [u.name for u in units] == [f"public.w#{i}of4" for i in range(1, 5)]
    assert all(u.by_block for u in units)
    assert parts(wide, split_rows=400_000, split_bytes=mb) == MAX_PARTS
    assert parts(wide, split_rows=0, split_bytes=0) == 1
    assert parts(wide, split_rows=10, split_bytes=0) == MAX_ROW_PARTS  # 100 by rows: capped
    assert parts(wide, split_rows=250, split_bytes=256 * mb) == 4  # rows say 4, bytes say 4
    assert parts(wide, split_rows=200, split_bytes=256 * mb) == 5  # rows say 5: the larger
    few_blocks = Table("public", "f", 10, 8192, ("id",), None, blocks=2, stored_bytes=900 * mb)
    assert len(plan_units([few_blocks], 400_000, by_block=True, split_bytes=256 * mb)) == 2
    keyed = Table("public", "k", 1000, 64 * mb, ("id", "v"), "id", stored_bytes=600 * mb)
    assert tables_to_split([keyed, t("small")], 400_000, 256 * mb) == [keyed]
    units = plan_units([keyed], 400_000, {"public.k": (1, 1000)}, split_bytes=256 * mb)
    assert [(u.lo, u.hi) for u in units] == [(None, 335), (335, 669), (669, None)]
    never_analyzed = Table("public", "n", -1, 9 * 8192, ("id",), None, blocks=9, stored_bytes=mb)
    assert len(plan_units([never_analyzed], 10, by_block=True, split_bytes=mb // 3)) == 4


def test_block_ranges_read_by_tid_and_replace_nothing_on_the_target() -> None:
    """A block range reads ``ctid`` bounds on the source; on the target its rows cannot be
    found again, so it empties nothing (a copy claims it instead) and never uses FREEZE."""
    unit = Unit("public", "notes", ("id",), 1, 3, "ctid", 10, 20, by_block=True)
    st = statements(unit, "binary", "stage")
    out = repr(st.copy_out)
    assert "SQL('ctid'), SQL(' >= '), Composed([Literal('(10,0)'), SQL('::pg_catalog.tid')])" in out
    assert "SQL(' < '), Composed([Literal('(20,0)'), SQL('::pg_catalog.tid')])" in out
    assert st.empty is None
    assert "FREEZE" not in repr(st.copy_in)
