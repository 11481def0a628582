"""Where the two Pagila files come from: ``PAGILA_SQL_DIR``, or the pinned upstream commit.

Downloads are checked against the pinned sha256 before use; a mismatch is an error, never a
silent use of other data.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pagila_tasks.base.errors import InputError
from pagila_tasks.config import Settings

PAGILA_COMMIT = "e0e35a666f31a786b9d3c06cb83799fc46db25d4"
RAW_BASE = f"https://raw.githubusercontent.com/devrimgunduz/pagila/{PAGILA_COMMIT}"
PINNED_SHA256 = {
    "pagila-schema.sql": "8ce358e4c8014087b85296694a0893887bd7a4190e3ce407f2721b86b98e5707",
    "pagila-data.sql": "880580fb2cd4daaa99f290ced264988cdd657b3158be63cd281466f796f6dbf2",
}
PINNED_COPY_TABLES = (
    *("public.actor", "public.address", "public.category", "public.city", "public.country"),
    *("public.customer", "public.film", "public.film_actor", "public.film_category"),
    *("public.inventory", "public.language", "public.rental", "public.staff", "public.store"),
    *(f"public.payment_p2022_0{month}" for month in range(1, 8)),
)
"""The 21 tables (14 ordinary, 7 payment partitions) the pinned data file has a COPY block for.

A data file must carry a block for each of these that the schema file creates: a file cut short
(or empty) would otherwise load as a success with tables left empty.
"""


@dataclass(frozen=True)
class PagilaFiles:
    """The two files a load reads, and their fingerprints."""

    schema: Path
    data: Path
    schema_sha256: str
    data_sha256: str


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in blocks; a missing file is an :class:`InputError`."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise InputError(str(path), None, "file not found") from None
    except OSError as exc:
        raise InputError(str(path), None, f"cannot be read: {exc.strerror}") from None
    return digest.hexdigest()


def _download(name: str, dest: Path) -> None:
    url = f"{RAW_BASE}/{name}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - fixed https URL
            while block := resp.read(1 << 20):
                out.write(block)
        got = sha256_of(Path(tmp))
        if got != PINNED_SHA256[name]:
            raise InputError(
                url, None, f"sha256 {got} does not match the pinned {PINNED_SHA256[name]}"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def hashes_present(s: Settings, sql_dir: Path | None = None) -> dict[str, str]:
    """sha256 of whichever of the two files can be read (for the ledger row of a failed load)."""
    folder = sql_dir or s.sql_dir
    found = {}
    if folder is not None:
        for name in PINNED_SHA256:
            try:
                found[name] = sha256_of(folder / name)
            except InputError:
                continue
    return found


def locate(s: Settings, sql_dir: Path | None = None) -> PagilaFiles:
    """The files to load, fingerprinted: from ``sql_dir`` (the run's own folder), else
    ``PAGILA_SQL_DIR``, else the verified download cache."""
    folder = sql_dir or s.sql_dir
    if folder is not None:
        schema, data = folder / "pagila-schema.sql", folder / "pagila-data.sql"
        return PagilaFiles(schema, data, sha256_of(schema), sha256_of(data))
    folder = s.cache_dir / PAGILA_COMMIT
    paths = {}
    for name, pinned in PINNED_SHA256.items():
        path = folder / name
        if not path.exists() or sha256_of(path) != pinned:
            _download(name, path)
        paths[name] = path
    return PagilaFiles(
        paths["pagila-schema.sql"],
        paths["pagila-data.sql"],
        PINNED_SHA256["pagila-schema.sql"],
        PINNED_SHA256["pagila-data.sql"],
    )
