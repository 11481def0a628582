"""When a refresh may apply changes in place, and in what order it writes (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pagila_tasks.run.changeplan import (
    MOST_RANGES,
    Change,
    Ranges,
    Reference,
    RowKey,
    after,
    bin_stride,
    buckets,
    bunched,
    confirms,
    deleted_in,
    key_bounds,
    lowest_binned,
    parents_first,
    range_kind,
    range_shift,
    refusal,
    too_many,
    touched,
)
from pagila_tasks.run.model import ReplicationPlan
from pagila_tasks.run.plan import Unit


def _change(table: str, fetch: int = 0, gone: int = 0, root: str | None = None) -> Change:
    return Change(
        "public",
        table,
        "t0",
        ("id",),
        ("integer",),
        ("id", "v"),
        ("v",),
        root=("public", root or table),
        fetch=fetch,
        gone=gone,
    )


def test_a_table_needs_a_key_and_plain_writes_to_be_changed_in_place() -> None:
    keyed = RowKey("public", "a", ("id",), ("integer",), root=("public", "a"))
    assert refusal(keyed) is None
    assert "no primary key" in (refusal(RowKey("public", "a", None, None)) or "")
    assert "rules" in (refusal(RowKey("public", "a", ("id",), ("integer",), has_rules=True)) or "")
    forced = RowKey("public", "a", ("id",), ("integer",), forced_rls=True)
    assert "row security" in (refusal(forced) or "")
    assert refusal(None)


def test_past_the_share_a_full_copy_is_made() -> None:
    assert too_many(_change("a", fetch=10, gone=15), 100, 100, 0.25) is None
    why = too_many(_change("a", fetch=10, gone=16), 100, 100, 0.25)
    assert why and "26 of 100 rows differ" in why
    # an emptied table: every row differs (measured against the larger side)
    assert too_many(_change("a", gone=5462), 0, 5462, 0.25)


def test_parents_are_written_before_the_tables_that_reference_them() -> None:
    rental, payment, staff = (
        _change("rental"),
        _change("payment_p1", root="payment"),
        _change("staff"),
    )
    refs = [
        Reference(("public", "payment"), ("public", "rental")),
        Reference(("public", "rental"), ("public", "staff")),
        Reference(("public", "payment"), ("public", "payment")),  # self-reference: no order
    ]
    order = [c.table for c in parents_first([payment, rental, staff], refs)]
    assert order == ["staff", "rental", "payment_p1"]


def test_a_cycle_keeps_the_given_order() -> None:
    a, b = _change("a"), _change("b")
    refs = [
        Reference(("public", "a"), ("public", "b")),
        Reference(("public", "b"), ("public", "a")),
    ]
    assert parents_first([a, b], refs) == [a, b]


def test_what_a_foreign_key_action_could_write_is_measured_again() -> None:
    p = ("public", "parent")
    cascade_delete = Reference(("public", "a"), p, on_delete="c")
    cascade_update_key = Reference(("public", "b"), p, on_update="c", referenced=("id",))
    cascade_update_other = Reference(("public", "c"), p, on_update="n", referenced=("code",))
    restrict = Reference(("public", "d"), p)
    below_a = Reference(("public", "e"), ("public", "a"), on_update="c", referenced=("id",))
    refs = [cascade_delete, cascade_update_key, cascade_update_other, restrict, below_a]
    # updates only: the key is never updated, so only the key on another column can act
    assert touched([_change("parent", fetch=3)], refs) == {("public", "c")}
    # deletes: ON DELETE CASCADE writes a, and a's own children may then be written any way
    assert touched([_change("parent", gone=1)], refs) == {("public", "a"), ("public", "e")}
    # a key to its own tree with an action: the whole tree is measured again
    itself = Reference(p, p, on_delete="n")
    assert touched([_change("parent", gone=1)], [itself]) == {p}


def test_the_plan_carries_its_changes_through_the_run_record() -> None:
    change = _change("a", fetch=3, gone=1)
    unit = Unit("public", "a", ("id", "v"), kind="changes", stage="t0")
    plan = ReplicationPlan(
        ("public",),
        True,
        {},
        (unit,),
        (("public", "a"),),
        applies=True,
        changes=(change,),
        horizon=(1 << 32) + 5,
    )
    back = ReplicationPlan.from_json(plan.as_json())
    assert back.applies and back.changes == (change,) and back.horizon == (1 << 32) + 5
    assert ReplicationPlan.from_json(plan.as_json() | {"horizon": None}).horizon is None
    assert back.unit(unit.as_args()) == unit and unit.name == "public.a changes"


def test_a_changed_tables_checksum_after_the_apply_is_the_proofs_plus_the_writes() -> None:
    """Rows are hashed into a sum: the live sum at the proof, plus the fetched rows' hashes,
    less the replaced and deleted rows' (``net``), is the sum after the apply."""
    change = Change("public", "a", "t0", ("id",), ("integer",), ("id",), (), net=-7)
    assert after(change, 10, "h:100", inserted=2, deleted=1) == (11, "h:93")
    assert after(change, 10, "t:-5", inserted=0, deleted=0) == (10, "t:-12")


def test_a_guess_is_kept_only_when_it_accounts_for_both_counts_and_checksums() -> None:
    """Applying the guess (2 inserted, 1 gone, checksum +30) to the live 10 rows summing 100 must
    give the source's 11 rows summing 130; a row it missed on either side shows in the sums."""
    guess = Change("public", "a", "t0", ("id",), ("integer",), ("id",), (), gone=1, net=30)
    live = (10, "h:100")
    assert confirms(guess, (11, "h:130"), live, inserted=2)
    assert not confirms(guess, (11, "h:131"), live, inserted=2)  # a changed row not written since
    assert not confirms(guess, (12, "h:130"), live, inserted=2)  # a row it did not see
    assert not confirms(guess, (11, "t:130"), live, inserted=2)  # another method never agrees
    assert not confirms(guess, (11, None), (10, None), inserted=2)  # no checksums: no proof


def test_deleted_keys_are_looked_for_only_in_the_buckets_whose_counts_say_so() -> None:
    """About sixteen buckets per deleted key (a power of two, 64 to 65,536); a bucket holds a
    deleted key when the live rows outnumber the source's once the source's new rows (which the
    live table lacks) are counted out."""
    assert buckets(1) == 64 and buckets(70) == 2048 and buckets(10**9) == 65536
    source = {0: 5, 1: 5, 2: 6, 3: 4}
    live = {0: 5, 1: 6, 2: 5, 3: 5}
    inserted = {2: 1}  # bucket 2: one new row, nothing deleted; bucket 3: one deleted
    assert deleted_in(source, live, inserted) == [1, 3]
    assert deleted_in(source, source, {}) == []


def test_an_integer_key_is_cut_into_about_as_many_ranges_as_buckets_wanted() -> None:
    """``key >> shift`` cuts the live span into at most ``wanted`` ranges (one more where the
    span does not start on a range's edge), with the smallest such shift: no coarser than it
    must be, so that the ranges holding a deleted key hold few others."""
    for lowest, highest, wanted in [
        (16053, 4935098, 2048),
        (1, 1, 64),
        (-5, 5, 64),
        (0, 2**63 - 1, 65536),
        (-(2**31), 2**31 - 1, 1024),
        (7, 7 + 63, 64),
        (7, 7 + 64, 64),
    ]:
        shift = range_shift(lowest, highest, wanted)
        assert (highest >> shift) - (lowest >> shift) + 1 <= wanted + 1
        assert (highest - lowest) >> shift < wanted
        assert shift == 0 or (highest - lowest) >> (shift - 1) >= wanted
    assert range_shift(16053, 4935098, 2048) == 12
    assert range_shift(9, 3, 64) == 0  # an empty span (never asked for) is one range


def test_a_dates_span_is_cut_into_bins_of_whole_microseconds() -> None:
    """Pure: about ``wanted`` bins from the span's first value cover it to its last; a span of
    one instant is one bin of a microsecond."""
    start = datetime(2022, 3, 1, 0, 0, 0, 59918, tzinfo=UTC)
    for span, wanted in [
        (timedelta(days=31), 2048),
        (timedelta(microseconds=7), 64),
        (timedelta(0), 64),
        (timedelta(days=365 * 300), 65536),
    ]:
        stride = bin_stride(start, start + span, wanted)
        assert stride >= timedelta(microseconds=1)
        assert stride % timedelta(microseconds=1) == timedelta(0)
        assert span // stride < wanted  # the last value falls in bin wanted - 1 or before
    assert bin_stride(start, start, 64) == timedelta(microseconds=1)
    # a value before the span is binned only where its bin starts in year 1 or later
    week = timedelta(days=7)
    assert lowest_binned(start, week) == datetime(1, 1, 9, tzinfo=UTC)
    early = datetime(1, 1, 5, tzinfo=UTC)
    assert lowest_binned(early, week) == early  # the live span itself always is


def test_deleted_keys_are_looked_for_by_ranges_of_a_leading_column_that_spreads_the_rows() -> None:
    """A key whose leading column is an integer, a date or a timestamp may be cut into ranges;
    any other is hashed. Ranges are kept only when their counts do not bunch the rows: the
    fullest may hold up to eight times an even share (and always 64 rows)."""
    assert range_kind(("integer",)) == "integer"
    assert range_kind(("smallint", "integer")) == "integer"
    assert range_kind(("timestamp(3) with time zone", "integer")) == "temporal"
    assert range_kind(("date",)) == "temporal"
    assert range_kind(("text",)) is None
    assert range_kind(("numeric", "integer")) is None
    assert range_kind(("timestamp without time zone[]",)) is None
    assert range_kind(("integer[]",)) is None
    even = {b: 66 for b in range(2048)}
    assert not bunched(even, 2048)
    assert not bunched({**even, 7: 528}, 2048)  # eight times the share: still spread
    assert bunched({**even, 7: 1200}, 2048)
    assert bunched({0: 1000, 1: 2000, 2: 3000}, 64)  # a leading column of three values
    assert not bunched({0: 60}, 64)  # a few rows are never worth another count
    assert not bunched({}, 64)


def test_the_chosen_ranges_are_read_by_bounds_of_the_leading_column() -> None:
    """Adjacent chosen buckets are one range; an integer's bounds are exact (within bigint), a
    date's or timestamp's run from a bin's start to the end of the run's last bin (exact too);
    too many ranges are not worth an index: the whole table is read."""
    by_int = Ranges("integer", shift=4)
    assert key_bounds(by_int, [3, 1, 2, 7]) == [(16, 63), (112, 127)]
    assert key_bounds(by_int, [-1]) == [(-16, -1)]
    assert key_bounds(Ranges("integer", shift=62), [1]) == [(2**62, 2**63 - 1)]
    hour = timedelta(hours=1)
    by_time = Ranges("temporal", stride=hour)
    at = datetime(2022, 3, 1, tzinfo=UTC)
    assert key_bounds(by_time, [at + 3 * hour, at, at + hour, at - 5 * hour]) == [
        (at - 5 * hour, at - 4 * hour),
        (at, at + 2 * hour),
        (at + 3 * hour, at + 4 * hour),
    ]
    many = list(range(0, 2 * (MOST_RANGES + 1), 2))
    assert key_bounds(by_int, many) is None
    assert key_bounds(by_int, many[:MOST_RANGES]) is not None
