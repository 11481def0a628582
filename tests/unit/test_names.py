"""Exact names from the text people type (pure): lists, quoting, qualified names, display."""

from __future__ import annotations

import pytest

from pagila_tasks.base import names
from pagila_tasks.base.errors import UsageError


def test_lists_keep_names_exactly() -> None:
    """Case, dots, spaces, commas inside quotes and non-ASCII letters are kept as written."""
    raw = 'public, Sales ,app.v2,"my schema","a,b","say ""hi""","ünï cödé"'
    assert names.parse_names(raw, "PAGILA_SCHEMAS") == (
        "public",
        "Sales",
        "app.v2",
        "my schema",
        "a,b",
        'say "hi"',
        "ünï cödé",
    )


@pytest.mark.parametrize("raw", ["", "a,,b", '"open', '"a"b', 'a"b', '"app".v2'])
def test_bad_lists_are_refused(raw: str) -> None:
    """Empty items, unterminated or stray quotes and half-quoted dotted names are refused."""
    with pytest.raises(UsageError):
        names.parse_names(raw, "X")


def test_qualified_lists_split_on_unquoted_dots_only() -> None:
    """In --tables, an unquoted dot separates schema and table; a quoted one is part of a name."""
    raw = 'rental, public.payment, app."v2.t", "app.v2".t, "a,b"."c.d"'
    assert names.parse_qualified_list(raw, "--tables") == [
        (None, "rental"),
        ("public", "payment"),
        ("app", "v2.t"),
        ("app.v2", "t"),
        ("a,b", "c.d"),
    ]


def test_sql_names_fold_bare_parts_only() -> None:
    """SQL syntax (a COPY statement) folds bare parts to lower case, keeps quoted ones."""
    assert names.split_sql('public."MixedCase"') == ("public", "MixedCase")
    assert names.split_sql("Public.Actor") == ("public", "actor")
    assert names.split_sql("actor") == ("public", "actor")


def test_display_is_unambiguous_and_terminal_safe() -> None:
    """Display quotes what needs it, so two different pairs never print the same; control
    characters print escaped; pg_dump patterns are always quoted."""
    assert names.display("app.v2", "t") != names.display("app", "v2.t")
    assert names.display("public", "actor") == "public.actor"
    assert names.display("a", 'we"ird') == 'a."we""ird"'
    assert names.printable("x\x1b[2Jy") == "x\\x1b[2Jy"
    assert names.dump_pattern("Sales") == '"Sales"'
    assert names.dump_pattern("*") == '"*"'


def test_schema_lists_keep_everything_inside_an_item() -> None:
    """In a schema list a dot belongs to the name, so blanks beside it stay: only the blanks
    around the whole item are dropped (`Sp1eCial .Char` is that schema, not `Sp1eCial.Char`)."""
    raw = "public,Sp1eCial .Char,  a . b  ,x. y,tab\tin.side"
    assert names.parse_names(raw, "PAGILA_SCHEMAS") == (
        "public",
        "Sp1eCial .Char",
        "a . b",
        "x. y",
        "tab\tin.side",
    )
    assert names.parse_names(' " padded " ', "X") == (" padded ",)


def test_blanks_around_the_dot_of_a_qualified_name_are_dropped() -> None:
    """In --tables, blanks around the separating dot are dropped as SQL drops them; a bare part
    keeps its inner blanks; a quoted part is exact, blanks included."""
    raw = 'public . actor, Sp1eCial . my table ,app ." v2 ", "Sp1eCial .Char".t'
    assert names.parse_qualified_list(raw, "--tables") == [
        ("public", "actor"),
        ("Sp1eCial", "my table"),
        ("app", " v2 "),
        ("Sp1eCial .Char", "t"),
    ]
    assert names.split_sql('Public . "Actor"') == ("public", "Actor")
