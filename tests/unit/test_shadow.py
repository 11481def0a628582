"""The display names a run's tasks carry (Celery's ``shadow``): what Flower's rows say."""

from __future__ import annotations

import pytest

from pagila_tasks.replication.largeobjects import unit as large_objects_unit
from pagila_tasks.run import shadow
from pagila_tasks.run.plan import Table, Unit, plan_units

RUN = "replicate-20250101T000000-abc123"


def test_a_whole_table_is_named_by_its_table() -> None:
    """A unit copying a whole table: ``copy schema.table``, no part and no run id."""
    assert shadow.for_copy(Unit("public", "film", ("film_id",))) == "copy public.film"


def test_a_key_range_is_named_by_its_table_and_part() -> None:
    """Every part of a split table: ``copy public.rental #Nof4``, counted from 1, one per part."""
    table = Table("public", "rental", 1000, 9, ("rental_id", "v"), "rental_id")
    units = plan_units([table], split_rows=250, key_spans={"public.rental": (1, 1000)})
    assert [shadow.for_copy(u) for u in units] == [
        f"copy public.rental #{i}of4" for i in range(1, 5)
    ]
    # The record keys the same unit as ``public.rental#2of4``: the display name adds one blank.
    assert units[1].name == "public.rental#2of4"
    assert shadow.for_copy(units[1]) == "copy " + units[1].name.replace("#", " #", 1)


def test_the_large_objects_unit() -> None:
    assert shadow.for_copy(large_objects_unit()) == "copy large objects"


@pytest.mark.parametrize(
    ("schema", "table", "shown"),
    [
        ("Sales", "Q1", 'copy "Sales"."Q1"'),
        ("app", "v2.t", 'copy app."v2.t"'),
        ("public", 'say "hi"', 'copy public."say ""hi"""'),
        ("public", "a b, c", 'copy public."a b, c"'),
        ("public", "t#1of2", 'copy public."t#1of2"'),
    ],
)
def test_odd_names_are_shown_as_sql_writes_them(schema: str, table: str, shown: str) -> None:
    """Upper case, dots, quotes, commas and blanks: quoted like ``names.display``, unambiguous
    (a table named ``t#1of2`` is never taken for a part of ``t``)."""
    assert shadow.for_copy(Unit(schema, table, ("id",))) == shown


def test_an_odd_name_split_keeps_its_quotes_before_the_part() -> None:
    unit = Unit("Sales", "big.t", ("id",), part=0, parts=2, key="id", lo=None, hi=10)
    assert shadow.for_copy(unit) == 'copy "Sales"."big.t" #1of2'


@pytest.mark.parametrize(
    ("task", "shown"),
    [
        ("pagila.load", f"load {RUN}"),
        ("pagila.replicate", f"prepare replication {RUN}"),
        ("pagila.finish_replication", f"finish replication {RUN}"),
        ("pagila.fail_replication", f"fail replication {RUN}"),
    ],
)
def test_control_tasks_name_their_run(task: str, shown: str) -> None:
    assert shadow.for_task(task, {"run_id": RUN, "force": True}) == shown


@pytest.mark.parametrize(
    ("task", "kwargs"),
    [
        ("pagila.copy_table", {"run_id": RUN}),  # named by its unit (for_copy), not here
        ("pagila.preflight", {"kind": "run", "options": {}}),
        ("pagila.scheduled", {"job": "run"}),
        ("no.such.task", {"run_id": RUN}),
        ("pagila.load", {}),  # no run: no name rather than "load None"
        ("pagila.replicate", {"run_id": ""}),
    ],
)
def test_other_tasks_get_no_display_name(task: str, kwargs: dict) -> None:
    """None: Celery then shows the wire name."""
    assert shadow.for_task(task, kwargs) is None


def test_a_reused_tables_build_is_named_by_its_table() -> None:
    """A resumed run's build of a table it reused whole: ``indexes schema.table``."""
    assert shadow.for_build("public.rental") == "indexes public.rental"
