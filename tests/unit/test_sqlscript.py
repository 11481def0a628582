"""The script parser: statements, COPY blocks streamed in chunks, and errors with file:line."""

from __future__ import annotations

import io

import pytest

from pagila_tasks.base.errors import InputError
from pagila_tasks.load.sqlscript import CopyBlock, Statement, data_only, parse, setval_sequence

SCRIPT = b"""--
-- header comment
SET client_encoding = 'UTF8';
CREATE FUNCTION f() RETURNS text
    LANGUAGE sql AS $_$
SELECT 'a;b'; -- semicolons inside dollar quotes
$_$;
/* block ; comment */ COMMENT ON TABLE t IS 'it''s; fine';

COPY public.t (a, b) FROM stdin;
1\tx
2\ty;z
\\.
SELECT pg_catalog.setval('public.t_a_seq', 2, true);
"""


def items(data: bytes) -> list[Statement | CopyBlock]:
    out: list[Statement | CopyBlock] = []
    for item in parse(io.BytesIO(data), "test.sql"):
        if isinstance(item, CopyBlock):
            rows = b""
            while chunk := item.read(4):
                rows += chunk
            item.rows_seen = rows  # type: ignore[attr-defined]
        out.append(item)
    return out


def test_statements_and_copy_blocks_in_order() -> None:
    """Quotes, dollar quotes and comments do not end statements; COPY rows stream until \\."""
    got = items(SCRIPT)
    kinds = [type(i).__name__ for i in got]
    assert kinds == ["Statement", "Statement", "Statement", "CopyBlock", "Statement"]
    assert got[0].line == 3
    assert "SELECT 'a;b';" in got[1].text and got[1].text.endswith("$_$;")
    assert got[2].text.endswith("'it''s; fine';")
    block = got[3]
    assert isinstance(block, CopyBlock)
    assert block.table == "public.t" and block.columns == ["a", "b"] and block.line == 10
    assert block.rows == 2 and block.rows_seen == b"1\tx\n2\ty;z\n"  # type: ignore[attr-defined]
    assert "setval" in got[4].text and got[4].line == 14


def test_copy_block_reads_in_bounded_chunks() -> None:
    """A read returns about the requested size, never the whole block."""
    rows = b"".join(b"%d\tsome text\n" % i for i in range(10000))
    data = b"COPY t (a, b) FROM stdin;\n" + rows + b"\\.\n"
    for item in parse(io.BytesIO(data), "big.sql"):
        assert isinstance(item, CopyBlock)
        sizes = []
        while chunk := item.read(1024):
            sizes.append(len(chunk))
        assert max(sizes) < 1024 + 64
        assert item.rows == 10000


@pytest.mark.parametrize(
    ("data", "line", "words"),
    [
        (b"COPY t (a, b) FROM stdin;\n1\tx\n2\ty\n", 1, "no terminating"),
        (b"COPY t (a, b) FROM stdin;\n1\tx\n2\n\\.\n", 3, "has 1 columns, expected 2"),
        (b"COPY t (a, b) FROM stdin;\n1\tx\n2\t\xff\xfe\n\\.\n", 3, "not UTF-8"),
        (b"SELECT 1;\nSELECT '\xc3\x28';\n", 2, "not UTF-8"),
        (
            b"COPY t (a, b) FROM stdin;\n1\tx\n\nSELECT pg_catalog.setval('s', 1);\n",
            1,
            "no terminating",
        ),
        (b"SELECT 1;\nSELECT 2\n", 2, "not terminated"),
    ],
)
def test_bad_input_names_file_and_line(data: bytes, line: int, words: str) -> None:
    """Every malformed input raises InputError with the file name and the offending line."""
    with pytest.raises(InputError) as info:
        items(data)
    assert info.value.path == "test.sql"
    assert info.value.line == line
    assert words in str(info.value)
    assert str(info.value).startswith(f"test.sql:{line}: ")


def test_pagila_files_parse(pagila_dir: object) -> None:
    """The real Pagila files give 21 COPY blocks and the expected row total."""
    from pathlib import Path

    from pagila_tasks.load.sqlscript import parse_file

    blocks = 0
    rows = 0
    for item in parse_file(Path(str(pagila_dir)) / "pagila-data.sql"):
        if isinstance(item, CopyBlock):
            item.drain()
            blocks += 1
            rows += item.rows
    assert blocks == 21
    assert rows == 49636


DATA = b"""--
-- PostgreSQL database dump
SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);
/* a block comment */ SET standard_conforming_strings = on;

COPY public.t (a, b) FROM stdin;
1\tx
\\.
SELECT pg_catalog.setval('public."t_a_seq"', 2, true);
"""


def test_data_file_passes_data_only() -> None:
    """SET lines, set_config, setval with literal arguments, COPY blocks and comments pass."""
    got = list(data_only(parse(io.BytesIO(DATA), "data.sql"), "data.sql"))
    assert [type(i).__name__ for i in got] == ["Statement"] * 3 + ["CopyBlock", "Statement"]
    assert setval_sequence(got[4]) == 'public."t_a_seq"'  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "statement",
    [
        b"DROP SCHEMA pagila_support CASCADE;",
        b"CREATE TABLE public.intruder (id integer);",
        b"INSERT INTO public.t VALUES (1, 'x');",
        b"COPY public.t (a, b) FROM '/etc/passwd';",
        b"SELECT pg_catalog.setval('s', (SELECT max(a) FROM public.t));",
        b"SELECT pg_catalog.setval('s', 1, true), pg_catalog.pg_sleep(1);",
        b"SELECT pg_catalog.set_config('search_path', current_user, false);",
        b"/* SET x = 1; */ TRUNCATE public.t;",
        b"DO $$BEGIN EXECUTE 'SET x = 1'; END$$;",
    ],
)
def test_data_file_refuses_anything_else(statement: bytes) -> None:
    """Any other statement raises file:line: statement not allowed, before it is handed out."""
    handed: list[str] = []
    with pytest.raises(InputError) as info:
        for item in data_only(parse(io.BytesIO(DATA + statement + b"\n"), "data.sql"), "data.sql"):
            handed.append(item.text if isinstance(item, Statement) else item.table)
    assert str(info.value) == "data.sql:11: statement not allowed in a data file"
    assert len(handed) == 5 and statement.decode() not in handed


def test_pinned_copy_tables_are_the_pinned_files_blocks(pagila_dir: object) -> None:
    """PINNED_COPY_TABLES names exactly the 21 tables the pinned data file has blocks for."""
    from pathlib import Path

    from pagila_tasks.load.pagila_files import PINNED_COPY_TABLES
    from pagila_tasks.load.sqlscript import parse_file

    path = Path(str(pagila_dir)) / "pagila-data.sql"
    blocks = [i.table for i in data_only(parse_file(path), str(path)) if isinstance(i, CopyBlock)]
    assert sorted(blocks) == sorted(PINNED_COPY_TABLES) and len(set(blocks)) == 21


# -- PostgreSQL's own grammar decides (pglast) ------------------------------------------------

SMUGGLE = (
    b"SET application_name = E'\\''; DROP TABLE victim.keep; "
    b"CREATE TABLE public.smuggled AS SELECT 1; --'"
)


@pytest.mark.parametrize(
    "statement",
    [
        SMUGGLE,
        b"SET application_name = E'\\''; COMMIT; --'",
        b"SET role = 'pagila';",
        b"SET ROLE pagila;",
        b"SET SESSION AUTHORIZATION DEFAULT;",
        b"RESET ROLE;",
        b"RESET ALL;",
        b"COMMIT;",
        b"BEGIN;",
        b"SET search_path = victim;",
        b"SET search_path = public, victim;",
        b"SET standard_conforming_strings = off;",
        b"SET client_encoding = 'SJIS';",
        b"SET default_transaction_read_only = on;",
        b"SET statement_timeout = DEFAULT;",
        b"SELECT pg_catalog.setval('s', 1, true) AS x;",
        b"SELECT pg_catalog.setval('s', 1, true) FROM public.t;",
        b"SELECT setval('s', 1, true);",
        b"SELECT pg_catalog.set_config('search_path', 'victim', false);",
        b"SELECT pg_catalog.set_config('role', 'pagila', false);",
    ],
)
def test_data_file_refuses_by_the_grammar(statement: bytes) -> None:
    """E'' escapes, hidden transaction control, identity changes and settings outside the
    allow-list are refused at their line, before anything of them is handed out to run."""
    handed: list[str] = []
    with pytest.raises(InputError) as info:
        for item in data_only(parse(io.BytesIO(DATA + statement + b"\n"), "data.sql"), "data.sql"):
            handed.append(item.text if isinstance(item, Statement) else item.table)
    assert str(info.value) == "data.sql:11: statement not allowed in a data file"
    assert len(handed) == 5


@pytest.mark.parametrize(
    "statement",
    [
        b"SET search_path = public, pg_catalog;",
        b"SET search_path = '';",
        b"SET transaction_timeout = 0;",
        b"SET default_table_access_method = heap;",
        b"SET client_encoding = 'UTF8';",
        b"SELECT pg_catalog.setval('public.t_a_seq', 9999999999, false);",
        b"SELECT pg_catalog.setval('public.t_a_seq', 5);",
    ],
)
def test_data_file_allows_what_pg_dump_writes(statement: bytes) -> None:
    """The settings pg_dump writes, search_path to the loaded schema, and setval with literal
    (bigint) arguments pass."""
    got = list(data_only(parse(io.BytesIO(DATA + statement + b"\n"), "data.sql"), "data.sql"))
    assert len(got) == 6 and got[5].text == statement.decode()  # type: ignore[union-attr]


def test_escape_strings_end_where_the_server_ends_them() -> None:
    """A ; inside an E'' string with an escaped quote does not end the statement."""
    got = items(b"SELECT E'it\\'s; fine', 'x';\nSELECT 2;\n")
    assert [i.text for i in got] == ["SELECT E'it\\'s; fine', 'x';", "SELECT 2;"]  # type: ignore[union-attr]


def test_a_piece_that_is_not_one_statement_is_refused() -> None:
    """Text the splitter took for one statement but the grammar reads as two, or as none that
    parses, is refused naming the file and line, its content not quoted."""
    from pagila_tasks.load.sqlscript import _one_statement

    with pytest.raises(InputError) as info:
        _one_statement("SELECT 1; DROP TABLE victim.keep;", 7, "x.sql")
    assert str(info.value).startswith("x.sql:7: 2 statements where one was expected")
    with pytest.raises(InputError) as info:
        _one_statement("CREATE TABLE t ((\n  secret_word_here);", 3, "x.sql")
    assert str(info.value).startswith("x.sql:3: statement failed to parse: syntax error")
    assert "secret_word_here" not in str(info.value)


def test_copy_only_into_the_given_tables() -> None:
    """Given the pinned tables, a COPY block into another table, or with options, is refused."""
    for statement in (
        b"COPY public.other (a) FROM stdin;\n1\n\\.\n",
        b"COPY public.t (a, b) FROM stdin WITH (FORMAT csv);\n1,x\n\\.\n",
    ):
        with pytest.raises(InputError) as info:
            for item in data_only(
                parse(io.BytesIO(DATA + statement), "d.sql"), "d.sql", ("public.t",)
            ):
                if isinstance(item, CopyBlock):
                    item.drain()
        assert str(info.value).startswith("d.sql:11: statement not allowed in a data file (COPY")
    assert len(list(data_only(parse(io.BytesIO(DATA), "d.sql"), "d.sql", ("public.t",)))) == 5


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        (b"BEGIN;", "transaction control"),
        (b"START TRANSACTION;", "transaction control"),
        (b"COMMIT;", "transaction control"),
        (b"END;", "transaction control"),
        (b"ROLLBACK;", "transaction control"),
        (b"SAVEPOINT s;", "transaction control"),
        (b"RELEASE SAVEPOINT s;", "transaction control"),
        (b"PREPARE TRANSACTION 'x';", "transaction control"),
        (b"SET ROLE pagila;", "a change of role"),
        (b"SET role = 'pagila';", "a change of role"),
        (b"SET SESSION AUTHORIZATION pagila;", "a change of session authorization"),
        (b"RESET ROLE;", "a change of role"),
        (b"RESET ALL;", "RESET ALL"),
        (b"SET standard_conforming_strings = off;", "standard_conforming_strings other than on"),
    ],
)
def test_schema_file_refuses_transaction_control_and_identity(statement: bytes, why: str) -> None:
    """Transaction control and changes of identity in a schema file are refused at their line."""
    from pagila_tasks.load.sqlscript import schema_only

    script = b"SET client_encoding = 'UTF8';\nCREATE TABLE public.t (a int);\n" + statement + b"\n"
    handed = []
    with pytest.raises(InputError) as info:
        for item in schema_only(parse(io.BytesIO(script), "s.sql"), "s.sql"):
            handed.append(item)
    assert str(info.value) == f"s.sql:3: statement not allowed in a schema file ({why})"
    assert len(handed) == 2


def test_the_pinned_schema_file_passes_schema_only(pagila_dir: object) -> None:
    """Every statement of the pinned schema file parses alone and passes schema_only."""
    from pathlib import Path

    from pagila_tasks.load.sqlscript import parse_file, schema_only

    path = Path(str(pagila_dir)) / "pagila-schema.sql"
    assert len(list(schema_only(parse_file(path), str(path)))) > 200
