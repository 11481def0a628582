"""Stream a pg_dump-style SQL script as statements and COPY blocks, with line numbers.

Pure parsing, no database: the loader feeds what this yields to PostgreSQL. COPY rows are never
held whole in memory: a :class:`CopyBlock` is a file-like reader over the script that the COPY
consumes chunk by chunk, checking UTF-8 and the column count of each row as it goes, so every
error names the file and the line. Where a statement ends is proposed by a quote tracker and
decided by PostgreSQL's own grammar (pglast, libpg_query): every statement outside the COPY rows
is parsed, and a piece that is not exactly one statement is refused. :func:`data_only` holds a
data file to data and :func:`schema_only` a schema file to what a load's transaction allows,
statement by statement as the parse goes, before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pglast import ast, parse_sql
from pglast.enums import VariableSetKind
from pglast.parser import ParseError

from pagila_tasks.base import names
from pagila_tasks.base.errors import InputError

NOT_IN_DATA = "statement not allowed in a data file"

_SQLISH = re.compile(rb"^(--|COPY\s|SELECT\s|SET\s|CREATE\s|ALTER\s)", re.IGNORECASE)
_DOLLAR = re.compile(r"\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$")
_TERMINATOR = (b"\\.\n", b"\\.\r\n", b"\\.")


@dataclass(frozen=True)
class Statement:
    """One SQL statement, the line it starts on, and its parse tree (PostgreSQL's own grammar,
    through pglast): ``text`` parses to exactly ``node``, one statement."""

    text: str
    line: int
    node: ast.Node | None = field(default=None, compare=False, repr=False)


@dataclass
class CopyBlock:
    """A ``COPY ... FROM stdin;`` statement whose rows follow it in the script.

    ``read`` hands the rows to psycopg2's ``copy_expert`` and stops at the ``\\.`` line.
    """

    statement: Statement
    table: str
    columns: list[str] | None
    _lines: _Lines = field(repr=False)
    rows: int = 0
    done: bool = False
    _pending: bytes = b""

    @property
    def line(self) -> int:
        """The line of the COPY statement."""
        return self.statement.line

    def read(self, size: int = 65536) -> bytes:
        """Return up to about ``size`` bytes of whole rows; ``b''`` after the ``\\.`` line."""
        chunks: list[bytes] = []
        total = 0
        while total < size and not self.done:
            raw = self._lines.next()
            if raw is None:
                raise InputError(
                    self._lines.path,
                    self.line,
                    f"COPY block for {self.table} has no terminating \\. line "
                    f"(end of file at line {self._lines.number})",
                )
            if raw in _TERMINATOR:
                self.done = True
                break
            self._check_row(raw)
            chunks.append(raw)
            total += len(raw)
            self.rows += 1
        return b"".join(chunks)

    def drain(self) -> None:
        """Skip any rows not read yet (the parser goes on after the block)."""
        while not self.done:
            self.read()

    def _check_row(self, raw: bytes) -> None:
        lineno = self._lines.number
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                self._lines.path,
                lineno,
                f"bytes that are not UTF-8 in a row of {self.table} "
                f"(byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
            ) from None
        if self.columns is None:
            return
        fields = raw.rstrip(b"\r\n").count(b"\t") + 1
        if fields != len(self.columns):
            if _SQLISH.match(raw) or raw.strip() == b"":
                raise InputError(
                    self._lines.path,
                    self.line,
                    f"COPY block for {self.table} has no terminating \\. line before line {lineno}",
                )
            raise InputError(
                self._lines.path,
                lineno,
                f"row of {self.table} has {fields} columns, expected {len(self.columns)}",
            )


class _Lines:
    """Numbered binary lines of one file."""

    def __init__(self, stream: BinaryIO, path: str) -> None:
        self._stream = stream
        self.path = path
        self.number = 0

    def next(self) -> bytes | None:
        raw = self._stream.readline()
        if not raw:
            return None
        self.number += 1
        return raw


@dataclass
class _Splitter:
    """Finds where statements end: tracks quotes, comments and dollar quoting across lines."""

    in_single: bool = False
    escapes: bool = False
    in_double: bool = False
    dollar: str | None = None
    block_depth: int = 0

    def feed(self, line: str) -> list[int]:
        """Offsets just past each ``;`` in ``line`` that ends a statement."""
        ends: list[int] = []
        i = 0
        while i < len(line):
            step = self._step(line, i, ends)
            if step is None:
                return ends
            i = step
        return ends

    def _step(self, line: str, i: int, ends: list[int]) -> int | None:
        """Read ``line[i]`` in the state the tracker is in; where to read on, or None when
        nothing more on the line can end a statement.

        One method a state (dollar quote, block comment, single, double quotes, plain SQL),
        so that each state's few rules can be read, and checked, apart from the others.
        """
        if self.dollar is not None:
            return self._in_dollar(line, i, self.dollar)
        if self.block_depth:
            return self._in_block_comment(line, i)
        if self.in_single:
            return self._in_single_quotes(line, i)
        if self.in_double:
            if line[i] == '"':
                self.in_double = False
            return i + 1
        return self._in_sql(line, i, ends)

    def _in_dollar(self, line: str, i: int, tag: str) -> int | None:
        """Inside ``$tag$ ... $tag$`` only the same tag counts: skip to just past it."""
        j = line.find(tag, i)
        if j < 0:
            return None
        self.dollar = None
        return j + len(tag)

    def _in_block_comment(self, line: str, i: int) -> int:
        """Block comments nest in PostgreSQL: count the openings and closings."""
        if line.startswith("/*", i):
            self.block_depth += 1
            return i + 2
        if line.startswith("*/", i):
            self.block_depth -= 1
            return i + 2
        return i + 1

    def _in_single_quotes(self, line: str, i: int) -> int:
        """A quote ends the string; in an ``E'...'`` string a backslash escapes what follows."""
        c = line[i]
        if c == "\\" and self.escapes:
            return i + 2
        if c == "'":
            self.in_single = False
        return i + 1

    def _in_sql(self, line: str, i: int, ends: list[int]) -> int | None:
        """Outside quotes and comments: what opens one, and a ``;`` that ends a statement
        (noted in ``ends``); None at a ``--`` comment, which runs to the end of the line."""
        c = line[i]
        if c == "'":
            self.in_single = True
            self.escapes = _escape_string_at(line, i)
        elif c == '"':
            self.in_double = True
        elif line.startswith("--", i):
            return None
        elif line.startswith("/*", i):
            self.block_depth = 1
            return i + 2
        elif c == "$":
            m = _DOLLAR.match(line, i)
            if m and (i == 0 or not (line[i - 1].isalnum() or line[i - 1] == "_")):
                self.dollar = m.group(0)
                return m.end()
        elif c == ";":
            ends.append(i + 1)
        return i + 1


def _escape_string_at(line: str, i: int) -> bool:
    """True when the quote at ``line[i]`` opens an ``E'...'`` string (backslash escapes)."""
    if i == 0 or line[i - 1] not in "eE":
        return False
    return i == 1 or not (line[i - 2].isalnum() or line[i - 2] in "_$")


def _is_blank(text: str) -> bool:
    """True for text holding only whitespace and ``--`` comments."""
    return all(not ln.strip() or ln.strip().startswith("--") for ln in text.splitlines())


def parse(stream: BinaryIO, path: str) -> Iterator[Statement | CopyBlock]:
    """Yield the statements and COPY blocks of a script, in order.

    A yielded :class:`CopyBlock` must be read (or is drained) before the next item comes.
    """
    lines = _Lines(stream, path)
    splitter = _Splitter()
    pending = _Pending(path)
    while (raw := lines.next()) is not None:
        text = _decode(raw, path, lines.number)
        pos = 0
        for end in splitter.feed(text):
            stmt = pending.cut(text[pos:end], lines.number)
            pos = end
            if stmt is None:
                continue
            block = _copy_block(stmt, lines)
            if block is None:
                yield stmt
                continue
            yield block
            block.drain()
        pending.carry(text[pos:], lines.number, splitter.in_single)
    pending.finish()


def _decode(raw: bytes, path: str, number: int) -> str:
    """One line as text; bytes that are not UTF-8 are refused here, naming the line, rather
    than sent on for the server to refuse without it."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            path, number, f"bytes that are not UTF-8 (byte 0x{raw[exc.start]:02x})"
        ) from None


@dataclass
class _Pending:
    """The text of a statement not ended yet, and the line it starts on.

    Kept apart from :func:`parse` so that the rules for what a statement's first line is
    (blank pieces and a lone ``--`` comment line before it do not count) are in one place.
    """

    path: str
    buf: list[str] = field(default_factory=list)
    start: int = 0

    def cut(self, piece: str, number: int) -> Statement | None:
        """``piece`` ends at a ``;``: the statement it completes, None for a blank piece or a
        comment (see :func:`_one_statement`)."""
        if not self.buf and not piece.strip():
            return None
        if not self.buf:
            self.start = number
        self.buf.append(piece)
        text = "".join(self.buf).strip()
        self.buf = []
        return _one_statement(text, self.start, self.path)

    def carry(self, rest: str, number: int, in_string: bool) -> None:
        """What follows the line's last ``;`` goes on to the next line, unless it is blank or
        a comment line before any statement (a ``--`` inside a string is text, not one)."""
        if not (rest.strip() or self.buf):
            return
        if not self.buf:
            if rest.strip().startswith("--") and not in_string:
                return
            self.start = number
        self.buf.append(rest)

    def finish(self) -> None:
        """At the end of the file, anything but blanks and comments left is an unended
        statement."""
        leftover = "".join(self.buf).strip()
        if leftover and not _is_blank(leftover):
            raise InputError(
                self.path, self.start, "statement not terminated by ';' before end of file"
            )


def _one_statement(text: str, line: int, path: str) -> Statement | None:
    """The piece ``text`` as one parsed statement; None for comments (and empty statements).

    The piece is what the quote tracking of :class:`_Splitter` cut, but the decision is
    PostgreSQL's grammar's: a piece that parses to more than one statement (quoting the
    splitter read otherwise than the server would) or that does not parse is refused, naming
    the line; the error quotes nothing of the file (pglast's "at or near" token is left out).
    """
    if _is_blank(text[:-1]):
        return None
    try:
        parsed = parse_sql(text)
    except ParseError as exc:
        where = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        at = f" at line {line + text[:where].count(chr(10))}" if where is not None else ""
        problem = str(exc.args[0]).split(" at or near ")[0]
        raise InputError(path, line, f"statement failed to parse: {problem}{at}") from None
    if not parsed:
        return None
    if len(parsed) > 1:
        raise InputError(
            path,
            line,
            f"{len(parsed)} statements where one was expected (PostgreSQL's grammar reads its "
            "quoting otherwise than it looks); refused",
        )
    return Statement(text, line, parsed[0].stmt)


def _copy_block(stmt: Statement, lines: _Lines) -> CopyBlock | None:
    """A ``COPY ... FROM stdin`` statement, whose rows follow it in the file."""
    node = stmt.node
    if not isinstance(node, ast.CopyStmt) or not node.is_from or node.filename is not None:
        return None
    if node.is_program or node.relation is None:
        return None
    rel = node.relation
    table = names.quote(rel.relname)
    if rel.schemaname:
        table = f"{names.quote(rel.schemaname)}.{table}"
    columns = [c.sval for c in node.attlist] if node.attlist else None
    return CopyBlock(stmt, table, columns, lines)


def _plain(value: object) -> object:
    """A pglast node's dict form without source positions (compared with templates below)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "location"}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_PLAIN_SELECT = {
    "@": "SelectStmt",
    "groupDistinct": False,
    "limitOption": {"#": "LimitOption", "name": "LIMIT_OPTION_DEFAULT", "value": 0},
    "op": {"#": "SetOperation", "name": "SETOP_NONE", "value": 0},
    "all": False,
}
_PLAIN_CALL = {
    "@": "FuncCall",
    "agg_within_group": False,
    "agg_star": False,
    "agg_distinct": False,
    "func_variadic": False,
    "funcformat": {"#": "CoercionForm", "name": "COERCE_EXPLICIT_CALL", "value": 0},
}
_NOT_LITERAL = object()


def _literal(node: dict[str, object]) -> object:
    """The Python value of a constant (``A_Const``) node; ``_NOT_LITERAL`` for anything else."""
    if node.get("@") != "A_Const" or node.get("isnull") or set(node) != {"@", "isnull", "val"}:
        return _NOT_LITERAL
    val = node["val"]
    assert isinstance(val, dict)
    kind = val.get("@")
    if kind == "String":
        return val.get("sval", "")
    if kind == "Integer":
        return int(val.get("ival", 0))  # type: ignore[call-overload]
    if kind == "Float" and re.fullmatch(r"-?\d+", str(val.get("fval", ""))):
        return int(str(val["fval"]))  # a bigint literal
    if kind == "Boolean":
        return bool(val.get("boolval", False))
    return _NOT_LITERAL


def literal_call(node: ast.Node | None) -> tuple[tuple[str, ...], list[object]] | None:
    """``SELECT f(literal, ...)`` and nothing more (no FROM, WHERE, second column, alias...):
    the function's name parts and the literal arguments; None for any other statement."""
    if not isinstance(node, ast.SelectStmt):
        return None
    plain = _plain(node(skip_none=True))
    assert isinstance(plain, dict)
    targets = plain.pop("targetList", [])
    if plain != _PLAIN_SELECT or len(targets) != 1 or set(targets[0]) != {"@", "val"}:
        return None
    call = dict(targets[0]["val"])
    funcname = call.pop("funcname", [])
    args = call.pop("args", [])
    if call != _PLAIN_CALL:
        return None
    values = [_literal(a) for a in args]
    if any(v is _NOT_LITERAL for v in values):
        return None
    return tuple(p["sval"] for p in funcname), values


DATA_SETTINGS = (
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "transaction_timeout",
    "client_encoding",
    "standard_conforming_strings",
    "check_function_bodies",
    "xmloption",
    "client_min_messages",
    "row_security",
    "default_tablespace",
    "default_table_access_method",
    "search_path",
)
"""The session settings a data file may ``SET`` (what pg_dump writes), with the values
:func:`_setting_refused` allows."""
LOADED_SCHEMA = "public"
"""The schema a load fills; the only one a data file may put on ``search_path`` (with
``pg_catalog`` and the empty string) or ``setval`` a sequence of."""
_IDENTITY_SETTINGS = ("role", "session_authorization")


def _setting_refused(node: ast.VariableSetStmt) -> str | None:
    """Why a ``SET``/``RESET`` may not run in either file, or None.

    Never a change of identity (``SET ROLE``, ``SET SESSION AUTHORIZATION``, their ``RESET``,
    ``RESET ALL``), and never a setting that would make the server read the rest of the file
    otherwise than this parser does (``standard_conforming_strings`` off, a client encoding
    other than UTF-8).
    """
    kind = node.kind
    name = (node.name or "").lower()
    if kind == VariableSetKind.VAR_RESET_ALL:
        return "RESET ALL"
    if name in _IDENTITY_SETTINGS:
        return f"a change of {name.replace('_', ' ')}"
    values = [_literal(_plain(a(skip_none=True))) for a in node.args or ()]  # type: ignore[arg-type]
    if name == "standard_conforming_strings" and (
        kind != VariableSetKind.VAR_SET_VALUE or [str(v).lower() for v in values] != ["on"]
    ):
        return "standard_conforming_strings other than on"
    if name == "client_encoding" and (
        kind != VariableSetKind.VAR_SET_VALUE
        or [str(v).lower().replace("-", "").replace("_", "") for v in values] != ["utf8"]
    ):
        return "a client encoding other than UTF8"
    return None


def schema_refusal(stmt: Statement) -> str | None:
    """Why a schema file statement may not run, or None: the load owns its transaction and its
    session, so no transaction control and no change of identity (see :func:`_setting_refused`).
    """
    node = stmt.node
    if isinstance(node, ast.TransactionStmt):
        return "transaction control"
    if isinstance(node, ast.VariableSetStmt):
        return _setting_refused(node)
    return None


def _data_setting_allowed(node: ast.VariableSetStmt) -> bool:
    if node.kind != VariableSetKind.VAR_SET_VALUE or _setting_refused(node) is not None:
        return False
    name = (node.name or "").lower()
    if name not in DATA_SETTINGS:
        return False
    values = [_literal(_plain(a(skip_none=True))) for a in node.args or ()]  # type: ignore[arg-type]
    if any(v is _NOT_LITERAL for v in values):
        return False
    if name == "search_path":
        return all(v in ("", LOADED_SCHEMA, "pg_catalog") for v in values)
    return len(values) == 1


def allowed_in_data(stmt: Statement) -> bool:
    """True for what pg_dump writes between a data file's COPY blocks, as PostgreSQL's grammar
    reads it: ``SET`` of a setting in :data:`DATA_SETTINGS` to a literal,
    ``SELECT pg_catalog.setval('seq', n[, bool])`` and
    ``SELECT pg_catalog.set_config('search_path', '', false)``.

    A data file is data: a statement that could drop, create or rewrite anything (DDL, DML, a
    COPY from a server file, a function call), end the transaction or change the session's
    identity has no business there.
    """
    node = stmt.node
    if isinstance(node, ast.VariableSetStmt):
        return _data_setting_allowed(node)
    return setval_sequence(stmt) is not None or literal_call(node) == (
        ("pg_catalog", "set_config"),
        ["search_path", "", False],
    )


def copy_allowed(block: CopyBlock, tables: Collection[str]) -> bool:
    """True for a data file's ``COPY table [(columns)] FROM stdin`` into one of ``tables``
    (qualified names), without options or WHERE clause."""
    node = block.statement.node
    return (
        isinstance(node, ast.CopyStmt)
        and not node.options
        and node.whereClause is None
        and block.table in tables
    )


def setval_sequence(stmt: Statement) -> str | None:
    """The sequence a ``pg_catalog.setval`` call with literal arguments names (as written in its
    literal), or None for any other statement."""
    call = literal_call(stmt.node)
    if call is None or call[0] != ("pg_catalog", "setval") or len(call[1]) not in (2, 3):
        return None
    args = call[1]
    if not isinstance(args[0], str) or type(args[1]) is not int:
        return None
    if len(args) == 3 and type(args[2]) is not bool:
        return None
    return args[0]


def data_only(
    items: Iterable[Statement | CopyBlock], path: str, tables: Collection[str] | None = None
) -> Iterator[Statement | CopyBlock]:
    """Pass a data file's items on, raising at the first statement :func:`allowed_in_data` refuses
    (and, given ``tables``, at the first COPY block :func:`copy_allowed` refuses).

    The check runs as each statement is parsed, before the caller can execute it, so a
    forbidden statement never runs, wherever it stands in the file (what came before it is in
    the caller's transaction, which the error rolls back).
    """
    for item in items:
        if isinstance(item, Statement) and not allowed_in_data(item):
            raise InputError(path, item.line, NOT_IN_DATA)
        if isinstance(item, CopyBlock) and tables is not None and not copy_allowed(item, tables):
            raise InputError(path, item.line, f"{NOT_IN_DATA} (COPY into {item.table})")
        yield item


def schema_only(
    items: Iterable[Statement | CopyBlock], path: str
) -> Iterator[Statement | CopyBlock]:
    """Pass a schema file's items on, raising at the first statement :func:`schema_refusal`
    refuses, before it runs."""
    for item in items:
        if isinstance(item, Statement) and (why := schema_refusal(item)) is not None:
            raise InputError(path, item.line, f"statement not allowed in a schema file ({why})")
        yield item


def parse_file(path: Path) -> Iterator[Statement | CopyBlock]:
    """:func:`parse` over a file on disk; a missing file is an :class:`InputError`."""
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        raise InputError(str(path), None, "file not found") from None
    except OSError as exc:
        raise InputError(str(path), None, f"cannot be read: {exc.strerror}") from None
    with stream:
        yield from parse(stream, str(path))
