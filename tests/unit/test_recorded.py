"""Which recorded measures the next proof may take, and the record's round trip (pure)."""

from __future__ import annotations

import json

from pagila_tasks.run.recorded import Recorded, Side, holds, sides, usable

HERE = "7716:1:16385"


def test_a_recorded_xmin_bounds_the_rows_written_since_only_on_its_own_counter() -> None:
    """Usable only in this counter's recent past: not ahead of this snapshot (another cluster,
    a restored backup), not unknown, not so far behind that xids wrap."""
    assert usable(1000, 5000)
    assert usable(5000, 5000)
    assert not usable(None, 5000)
    assert not usable(0, 5000)
    assert not usable(6000, 5000)
    assert not usable(1000, 1000 + (1 << 30))


def test_a_measure_holds_only_with_nothing_written_since_and_the_same_count() -> None:
    assert holds((10, "h:5"), rows_now=10, written_since=0)
    assert not holds((10, "h:5"), rows_now=10, written_since=1)  # an update, or a delete + insert
    assert not holds((10, "h:5"), rows_now=9, written_since=0)  # a delete leaves no xmin


def test_only_measures_from_the_same_origin_with_a_checksum_and_a_usable_xmin_are_known() -> None:
    side = Side(
        HERE,
        {
            "public.a": ((3, "h:1"), 100),
            "public.b": ((3, None), 100),  # checksums were off
            "public.c": ((3, "h:2"), None),  # written by an apply: measure it
            "public.d": ((3, "h:3"), 9000),  # ahead of this snapshot
        },
    )
    assert side.known(HERE, 5000) == {"public.a": ((3, "h:1"), 100)}
    assert side.known("7716:2:16385", 5000) == {}  # another timeline: a restored backup
    assert side.known(None, 5000) == {}  # the server would not say
    assert Side(None, side.tables).known(None, 5000) == {}


def test_the_record_a_run_leaves_round_trips_and_a_bad_one_proves_nothing() -> None:
    """The source's measures hold from the run snapshot's xmin, each target table's from the
    xmin it is given (None for one written by an apply it did not lock), with the writer of
    those an apply wrote; a record made before writers were kept reads as having none."""
    was = sides(
        [("public.a", 3, 3, "h:1", "h:1"), ("public.b", 2, 2, "t:4", "t:4")],
        (HERE, "9:1:5"),
        (700, {"public.a": 800, "public.b": None}),
        {"public.a": 812},
    )
    assert was.source == Side(HERE, {"public.a": ((3, "h:1"), 700), "public.b": ((2, "t:4"), 700)})
    assert was.target.tables["public.b"] == ((2, "t:4"), None)
    assert was.target.writers == {"public.a": 812} and was.source.writers == {}
    assert Recorded.from_json(was.as_json()) == was
    older = json.loads(was.as_json())
    del older["target"]["writers"]
    assert Recorded.from_json(json.dumps(older)).target.writers == {}
    assert Recorded.from_json(None) == Recorded()
    assert Recorded.from_json("not json") == Recorded()
    assert Recorded.from_json('{"source": {"tables": {"t": [1]}}}') == Recorded()
