"""The script parser: statements, COPY blocks streamed in chunks, and errors with file:line."""

from __future__ import annotations

import io

import pytest

from pagila_tasks.errors import InputError
from pagila_tasks.sqlscript import CopyBlock, Statement, data_only, parse, setval_sequence

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

    from pagila_tasks.sqlscript import parse_file

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

    from pagila_tasks.pagila_files import PINNED_COPY_TABLES
    from pagila_tasks.sqlscript import parse_file

    path = Path(str(pagila_dir)) / "pagila-data.sql"
    blocks = [i.table for i in data_only(parse_file(path), str(path)) if isinstance(i, CopyBlock)]
    assert sorted(blocks) == sorted(PINNED_COPY_TABLES) and len(set(blocks)) == 21
