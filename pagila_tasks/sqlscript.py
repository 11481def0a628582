"""Stream a pg_dump-style SQL script as statements and COPY blocks, with line numbers.

Pure parsing, no database: the loader feeds what this yields to PostgreSQL. COPY rows are never
held whole in memory: a :class:`CopyBlock` is a file-like reader over the script that the COPY
consumes chunk by chunk, checking UTF-8 and the column count of each row as it goes, so every
error names the file and the line. :func:`data_only` holds a data file to data, statement by
statement as the parse goes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pagila_tasks.errors import InputError

_COPY_RE = re.compile(
    r"^\s*COPY\s+(?P<table>(?:\"(?:[^\"]|\"\")+\"|[\w$.]+)(?:\.(?:\"(?:[^\"]|\"\")+\"|[\w$]+))?)"
    r"\s*(?:\((?P<columns>[^)]*)\))?\s+FROM\s+stdin\s*;\s*$",
    re.IGNORECASE | re.DOTALL,
)
_LITERAL = r"'(?:[^']|'')*'"
_SETVAL_RE = re.compile(
    rf"^SELECT\s+(?:pg_catalog\.)?setval\s*\(\s*(?P<sequence>{_LITERAL})\s*,\s*-?\d+\s*"
    r"(?:,\s*(?:true|false)\s*)?\)\s*;$",
    re.IGNORECASE,
)
_SET_CONFIG_RE = re.compile(
    rf"^SELECT\s+(?:pg_catalog\.)?set_config\s*\(\s*{_LITERAL}\s*,\s*{_LITERAL}\s*,"
    r"\s*(?:true|false)\s*\)\s*;$",
    re.IGNORECASE,
)
_SET_RE = re.compile(r"^SET\s", re.IGNORECASE)
_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)
_SQLISH = re.compile(rb"^(--|COPY\s|SELECT\s|SET\s|CREATE\s|ALTER\s)", re.IGNORECASE)
_DOLLAR = re.compile(r"\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$")
_TERMINATOR = (b"\\.\n", b"\\.\r\n", b"\\.")


@dataclass(frozen=True)
class Statement:
    """One SQL statement and the line it starts on."""

    text: str
    line: int


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
    in_double: bool = False
    dollar: str | None = None
    block_depth: int = 0

    def feed(self, line: str) -> list[int]:
        """Offsets just past each ``;`` in ``line`` that ends a statement."""
        ends: list[int] = []
        i, n = 0, len(line)
        while i < n:
            c = line[i]
            if self.dollar is not None:
                j = line.find(self.dollar, i)
                if j < 0:
                    return ends
                i = j + len(self.dollar)
                self.dollar = None
                continue
            if self.block_depth:
                if line.startswith("/*", i):
                    self.block_depth += 1
                    i += 2
                elif line.startswith("*/", i):
                    self.block_depth -= 1
                    i += 2
                else:
                    i += 1
                continue
            if self.in_single:
                if c == "'":
                    self.in_single = False
                i += 1
                continue
            if self.in_double:
                if c == '"':
                    self.in_double = False
                i += 1
                continue
            if c == "'":
                self.in_single = True
            elif c == '"':
                self.in_double = True
            elif line.startswith("--", i):
                return ends
            elif line.startswith("/*", i):
                self.block_depth = 1
                i += 2
                continue
            elif c == "$":
                m = _DOLLAR.match(line, i)
                if m and (i == 0 or not (line[i - 1].isalnum() or line[i - 1] == "_")):
                    self.dollar = m.group(0)
                    i = m.end()
                    continue
            elif c == ";":
                ends.append(i + 1)
            i += 1
        return ends


def _is_blank(text: str) -> bool:
    """True for text holding only whitespace and ``--`` comments."""
    return all(not ln.strip() or ln.strip().startswith("--") for ln in text.splitlines())


def parse(stream: BinaryIO, path: str) -> Iterator[Statement | CopyBlock]:
    """Yield the statements and COPY blocks of a script, in order.

    A yielded :class:`CopyBlock` must be read (or is drained) before the next item comes.
    """
    lines = _Lines(stream, path)
    splitter = _Splitter()
    buf: list[str] = []
    start = 0
    while True:
        raw = lines.next()
        if raw is None:
            break
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                path, lines.number, f"bytes that are not UTF-8 (byte 0x{raw[exc.start]:02x})"
            ) from None
        pos = 0
        for end in splitter.feed(text):
            piece = text[pos:end]
            if not buf and not piece.strip():
                pos = end
                continue
            if not buf:
                start = lines.number
            buf.append(piece)
            stmt = Statement("".join(buf).strip(), start)
            buf, pos = [], end
            if _is_blank(stmt.text[:-1]):
                continue
            block = _copy_block(stmt, lines)
            if block is None:
                yield stmt
                continue
            yield block
            block.drain()
        rest = text[pos:]
        if rest.strip() or buf:
            if not buf:
                if rest.strip().startswith("--") and not splitter.in_single:
                    continue
                start = lines.number
            buf.append(rest)
    leftover = "".join(buf).strip()
    if leftover and not _is_blank(leftover):
        raise InputError(path, start, "statement not terminated by ';' before end of file")


def _copy_block(stmt: Statement, lines: _Lines) -> CopyBlock | None:
    text = "\n".join(ln for ln in stmt.text.splitlines() if not ln.strip().startswith("--"))
    m = _COPY_RE.match(text)
    if m is None:
        return None
    cols = m.group("columns")
    columns = [c.strip() for c in cols.split(",")] if cols is not None else None
    return CopyBlock(Statement(text.strip(), stmt.line), m.group("table"), columns, lines)


def allowed_in_data(stmt: Statement) -> bool:
    """True for what pg_dump writes between a data file's COPY blocks: ``SET`` lines and
    ``pg_catalog.setval``/``set_config`` calls with literal arguments.

    A data file is data: a statement that could drop, create or rewrite anything (DDL, DML, a
    COPY from a server file, a function call) has no business there.
    """
    text = _LEADING_COMMENTS.sub("", stmt.text, count=1)
    return any(r.match(text) for r in (_SET_RE, _SETVAL_RE, _SET_CONFIG_RE))


def setval_sequence(stmt: Statement) -> str | None:
    """The sequence a ``setval`` call names (its literal, unquoted), or None for other text."""
    m = _SETVAL_RE.match(_LEADING_COMMENTS.sub("", stmt.text, count=1))
    return m.group("sequence")[1:-1].replace("''", "'") if m else None


def data_only(items: Iterable[Statement | CopyBlock], path: str) -> Iterator[Statement | CopyBlock]:
    """Pass a data file's items on, raising at the first statement :func:`allowed_in_data` refuses.

    The check runs as each statement is parsed, before the caller can execute it, so a
    forbidden statement never runs, wherever it stands in the file (what came before it is in
    the caller's transaction, which the error rolls back).
    """
    for item in items:
        if isinstance(item, Statement) and not allowed_in_data(item):
            raise InputError(path, item.line, "statement not allowed in a data file")
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
