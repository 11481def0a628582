"""Planning what a run keeps of the target's users' work: pure, no server."""

from __future__ import annotations

from pagila_tasks.replication.keepplan import (
    MARK,
    Annotation,
    Dependent,
    KeepPlan,
    Manifest,
    Own,
    Step,
    Survey,
    apart,
    plan,
)


def dep(key: str, kind: str, depth: int = 1, parents: tuple[str, ...] = ("1259:1",), **kw):
    base = {
        "type": "view",
        "identity": f"reporting.{key.replace(':', '_')}",
        "create_sql": f"CREATE {key}",
        "drop_sql": f"DROP {key}",
        "populated": False,
        "prebuild_sql": None,
        "swap_in_sql": None,
    }
    return Dependent(key, parents, depth, kind=kind, **(base | kw))


OURS = Manifest(frozenset({"table public.rental", "table public.film"}), {"TABLE public.film": "x"})
RENTAL = Own("table public.rental", "1259:1", "public", None, None)
FILM = Own("table public.film", "1259:2", "public", None, None)


def survey(deps=(), objs=(), notes=()) -> Survey:
    return Survey(("public",), tuple(deps), (RENTAL, FILM, *objs), tuple(notes))


def test_views_are_dropped_deepest_first_and_made_again_in_order() -> None:
    """In the switch, dependents are dropped from the deepest up and made again from the top
    down, so a view over a view never outlives, nor precedes, the one it reads."""
    kept = plan(survey([dep("a", "view"), dep("b", "view", 2, ("a",))]), OURS, True, "t")
    assert [s.sql for s in kept.switch] == ["DROP b", "DROP a", "CREATE a", "CREATE b"]
    assert kept.build == () and kept.detach == () and kept.lost == ()


def test_matviews_and_keys_are_built_ahead_under_a_temporary_name() -> None:
    """A swap builds materialized views and constraints ahead (their data and their check),
    then swaps them in by renaming in the switch."""
    mv = dep(
        "m",
        "matview",
        prebuild_sql=f"CREATE MATERIALIZED VIEW reporting.{MARK} AS SELECT 1 WITH DATA",
        swap_in_sql=f"ALTER MATERIALIZED VIEW reporting.{MARK} RENAME TO mv",
    )
    kept = plan(survey([mv]), OURS, True, "tok")
    assert [s.sql for s in kept.build] == [
        "CREATE MATERIALIZED VIEW reporting.pagila_keep_tok_0 AS SELECT 1 WITH DATA"
    ]
    assert [s.sql for s in kept.switch] == [
        "DROP m",
        "ALTER MATERIALIZED VIEW reporting.pagila_keep_tok_0 RENAME TO mv",
    ]


def test_in_place_drops_before_the_reset_and_makes_again_after_it() -> None:
    """In place, dependents are dropped before the reset and made again (a populated
    materialized view refreshed) once the new copy is built."""
    mv = dep("m", "matview", populated=True, identity="reporting.mv")
    kept = plan(survey([dep("a", "view"), mv]), OURS, False, "t")
    assert [s.sql for s in kept.detach] == ["DROP a", "DROP m"]
    assert [s.sql for s in kept.build] == [
        "CREATE a",
        "CREATE m",
        "REFRESH MATERIALIZED VIEW reporting.mv",
    ]
    assert not kept.swap and KeepPlan.from_json(kept.to_json()) == kept


def test_what_cannot_be_made_again_is_lost_with_everything_on_it() -> None:
    """A table elsewhere that uses a replicated type cannot be made again: it, and what depends
    on it, are named as lost and not planned."""
    table = dep("t", "other", type="table", identity="mine.rated")
    view = dep("v", "view", 2, ("t",))
    kept = plan(survey([table, view]), OURS, True, "t")
    assert len(kept.lost) == 2 and kept.lost[0].startswith("table mine.rated")
    assert kept.switch == ()


def test_objects_made_inside_a_replicated_schema() -> None:
    """An index someone added to a replicated table is built on the new copy; a table someone
    created in the schema is lost (with its index), and so is a view elsewhere that reads it."""
    index = Own("index public.idx", "1259:7", "public", "table public.rental", "CREATE INDEX idx")
    mine = Own("table public.mine", "1259:8", "public", None, None)
    mine_idx = Own("index public.mine_idx", "1259:9", "public", "table public.mine", "CREATE")
    reader = dep("r", "view", parents=("1259:8",))
    kept = plan(survey([reader], [index, mine, mine_idx]), OURS, True, "t")
    assert [s.sql for s in kept.build] == ["CREATE INDEX idx"]
    assert [x.split(" (")[0] for x in kept.lost] == ["table public.mine", "view reporting.r"]
    assert kept.kept == ("index public.idx",)


def test_a_replaced_schemas_contents_are_let_go_not_lost() -> None:
    """What is inside a schema the operator lets the run replace (--overwrite-target) is
    neither kept nor refused."""
    mine = Own("table payroll.salaries", "1259:8", "payroll", None, None)
    kept = plan(survey(objs=[mine]), OURS, True, "t", frozenset({"payroll"}))
    assert kept.lost == () and kept.build == ()


def test_annotations_keep_the_targets_own_not_the_sources_comments() -> None:
    """Grants are added again (skipped if their object is gone); a comment equal to the
    source's is left to the new copy; an owner the run's user cannot give away is a note."""
    notes = [
        Annotation("grant", "TABLE public.rental", "GRANT SELECT", None, True, "public", "1"),
        Annotation("comment", "TABLE public.film", "COMMENT x", "x", True, "public", "2"),
        Annotation("comment", "TABLE public.rental", "COMMENT y", "y", True, "public", "1"),
        Annotation("owner-lost", "TABLE public.rental", "ALTER", "boss", True, "public", "1"),
        Annotation("grant", "VIEW reporting.gone", "GRANT gone", None, False, "reporting", "9"),
    ]
    kept = plan(survey(notes=notes), OURS, True, "t")
    assert [(s.sql, s.optional) for s in kept.switch] == [
        ("GRANT SELECT", True),
        ("COMMENT y", True),
    ]
    assert kept.notes == ("TABLE public.rental stays owned by the run's user, not boss",)


def test_a_matview_over_another_dependent_is_made_in_the_switch() -> None:
    """A materialized view that reads another dependent (a view elsewhere) is not built ahead
    (it would bind to the view the switch drops): it is made and refreshed in the switch."""
    view = dep("v", "view")
    mv = dep(
        "m",
        "matview",
        2,
        ("v",),
        populated=True,
        identity="reporting.mv",
        prebuild_sql=f"CREATE MATERIALIZED VIEW reporting.{MARK} AS SELECT 1 WITH DATA",
        swap_in_sql=f"ALTER MATERIALIZED VIEW reporting.{MARK} RENAME TO mv",
    )
    kept = plan(survey([view, mv]), OURS, True, "t")
    assert kept.build == ()
    assert [s.sql for s in kept.switch] == [
        "DROP m",
        "DROP v",
        "CREATE v",
        "CREATE m",
        "REFRESH MATERIALIZED VIEW reporting.mv",
    ]


def test_indexes_on_replicated_tables_are_built_apart_on_the_build_schema() -> None:
    """An index someone added to a replicated table names only its table: it is rewritten to
    the build schema and built in a session of its own; one whose expression names a
    replicated function stays as live."""
    plain = Step(
        "index public.i", "CREATE INDEX i ON public.rental USING btree (x)", on=("public", "rental")
    )
    calls = Step(
        "index public.j",
        "CREATE INDEX j ON public.rental USING btree (public.f(x))",
        on=("public", "rental"),
    )
    trigger = Step("trigger t on public.rental", "CREATE TRIGGER t ...", on=("public", "rental"))
    alone, rest = apart([plain, calls, trigger], {"public": "pagila_stage_ab"})
    assert alone == ["CREATE INDEX i ON pagila_stage_ab.rental USING btree (x)"]
    assert rest == [calls, trigger]
    assert apart([plain], {}) == ([], [plain])


def test_an_object_the_source_now_has_too_gives_way_with_a_note() -> None:
    """An index someone made whose name the source now uses too is not built again (the
    source's comes with the new copy), and the plan says so."""
    index = Own("index public.idx", "1259:7", "public", "table public.rental", "CREATE INDEX idx")
    incoming = Manifest(OURS.objects | {"index public.idx"})
    kept = plan(survey(objs=[index]), OURS, True, "t", incoming=incoming)
    assert kept.build == () and kept.lost == ()
    assert kept.notes == (
        "index public.idx made on the target gives way to the source's of that name",
    )
