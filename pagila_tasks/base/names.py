"""Exact PostgreSQL names from the text people type, and back to text for people (pure).

A schema or table name may hold upper case, dots, commas, spaces, quotes or any letter, and must
reach the catalog exactly: never lower-cased, never split on a dot inside the name, never taken
as a pattern. The rules for lists (``PAGILA_SCHEMAS``, ``--schemas``, ``--tables``):

- items are separated by commas outside double quotes;
- a double-quoted item is taken exactly, two quotes standing for one: ``"a,b"``, ``"x""y"``;
- a bare item is taken as written, blanks around it dropped and its case kept (unlike SQL:
  ``Sales`` is the schema ``"Sales"``); in a schema list a dot belongs to the name, so nothing
  inside the item changes: `` Sp1eCial .Char `` is the schema ``"Sp1eCial .Char"``;
- in ``--tables`` only, a dot outside quotes separates schema and table (``app."v2.t"``), and
  blanks around that dot are dropped as SQL drops them (``public . actor`` is ``public.actor``);
  a bare part keeps its inner blanks, and a name that starts or ends with a blank is quoted.
"""

from __future__ import annotations

import re

from pagila_tasks.base.errors import UsageError

_BARE = re.compile(r"[a-z_][a-z0-9_$]*")


class _ItemSplit:
    """One left-to-right pass of :func:`_items` over a list.

    A class so that the two states a character can be read in (inside double quotes, or
    outside them) are each a short method that can be checked against the rules above on its
    own; the state they share (the item and part being built) lives here.
    """

    def __init__(self, raw: str, what: str) -> None:
        self.raw, self.what = raw, what
        self.items: list[list[tuple[str, bool]]] = []
        self.parts: list[tuple[str, bool]] = []
        self.buf: list[str] = []
        self.quoted = self.closed = False

    @property
    def in_quotes(self) -> bool:
        """True between an opening double quote and its closing one."""
        return self.quoted and not self.closed

    def end_part(self) -> None:
        """Close the part being built (at a dot, a comma or the end of the list)."""
        self.parts.append(("".join(self.buf), self.quoted))
        self.buf, self.quoted, self.closed = [], False, False

    def end_item(self) -> None:
        """Close the item being built (at a comma or the end of the list)."""
        self.end_part()
        self.items.append(self.parts)
        self.parts = []

    def quoted_char(self, i: int) -> int:
        """Read ``raw[i]`` inside quotes, where only a quote means anything: two stand for
        one, a single one closes. Returns how many characters were read."""
        raw = self.raw
        if raw[i] != '"':
            self.buf.append(raw[i])
            return 1
        if raw.startswith('""', i):
            self.buf.append('"')
            return 2
        self.closed = True
        return 1

    def bare_char(self, c: str) -> None:
        """Read ``c`` outside quotes: separators, an opening quote (only before any text of the
        part), blanks after a closing quote; anything else there is refused."""
        if c == ",":
            self.end_item()
        elif c == ".":
            self.end_part()
        elif c == '"' and not "".join(self.buf).strip() and not self.closed:
            self.buf, self.quoted = [], True
        elif self.closed:
            if not c.isspace():  # blanks after a closing quote are around the item: dropped
                raise UsageError(f"{self.what}: text after a closing quote in {self.raw!r}")
        elif c == '"':
            raise UsageError(f"{self.what}: a quote inside an unquoted name in {self.raw!r}")
        else:
            self.buf.append(c)


def _items(raw: str, what: str) -> list[list[tuple[str, bool]]]:
    """Split ``raw`` into items, each a list of (text, quoted) parts cut at unquoted dots.

    Unquoted parts keep their blanks: which blanks are dropped depends on whether a dot
    separates names (``--tables``) or belongs to one (schema lists); see :func:`_bare`.
    """
    split = _ItemSplit(raw, what)
    i = 0
    while i < len(raw):
        if split.in_quotes:
            i += split.quoted_char(i)
        else:
            split.bare_char(raw[i])
            i += 1
    if split.in_quotes:
        raise UsageError(f"{what}: unterminated quote in {raw!r}")
    split.end_item()
    return split.items


def _join(parts: list[tuple[str, bool]]) -> str:
    """Parts rejoined with the dots that separated them (for lists where a dot is no separator),
    exactly as written inside the item: only the blanks around the whole item are dropped."""
    return ".".join(text for text, _ in parts).strip()


def _bare(text: str, quoted: bool) -> str:
    """One part of a qualified name: quoted exactly, bare without the blanks around it."""
    return text if quoted else text.strip()


def parse_names(raw: str, what: str) -> tuple[str, ...]:
    """Exact names from a comma-separated list (schemas); dots belong to the names."""
    names = []
    for parts in _items(raw, what):
        if len(parts) > 1 and any(quoted for _, quoted in parts):
            raise UsageError(f'{what}: quote a name with a dot whole, as "app.v2", in {raw!r}')
        text, quoted = parts[0]
        name = text if len(parts) == 1 and quoted else _join(parts)
        if not name:
            raise UsageError(f"{what} {raw!r} names an empty schema")
        names.append(name)
    return tuple(dict.fromkeys(names))


def parse_qualified_list(raw: str, what: str) -> list[tuple[str | None, str]]:
    """``[schema.]table`` items as (schema or None, table) pairs, exact."""
    out: list[tuple[str | None, str]] = []
    for parts in _items(raw, what):
        if len(parts) > 2:
            raise UsageError(f"{what}: {_join(parts)!r} has more than one unquoted dot")
        names = [_bare(text, quoted) for text, quoted in parts]
        if any(not name for name in names):
            raise UsageError(f"{what} {raw!r} names an empty table")
        out.append((None, names[0]) if len(names) == 1 else (names[0], names[1]))
    return out


def split_sql(name: str) -> tuple[str, str]:
    """``schema.table`` in SQL syntax (bare parts fold to lower case) as exact names."""
    items = _items(name, "table name")
    parts = items[0] if len(items) == 1 else []
    names = [text if quoted else text.strip().lower() for text, quoted in parts]
    if len(names) == 1 and names[0]:
        return "public", names[0]
    if len(names) != 2 or not all(names):
        raise ValueError(f"not a table name: {name!r}")
    return names[0], names[1]


def quote(name: str) -> str:
    """The name as SQL would need it written: bare when lower-case plain, else double-quoted."""
    if _BARE.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def display(schema: str, name: str) -> str:
    """``schema.table`` for people and record keys, unambiguous whatever the names hold."""
    return f"{quote(schema)}.{quote(name)}"


def dump_pattern(name: str) -> str:
    """A pg_dump ``--schema`` pattern that matches exactly this name (never a wildcard)."""
    return '"' + name.replace('"', '""') + '"'


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (escape sequences) shown as ``\\xNN``."""
    return "".join(c if c.isprintable() or c == " " else f"\\x{ord(c):02x}" for c in text)


def run_token(run_id: str) -> str:
    """A short name part unique to a run (the tail of its id), for schemas and objects it names."""
    return "".join(c for c in run_id if c.isalnum())[-8:].lower()
