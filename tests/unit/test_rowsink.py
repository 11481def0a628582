"""The source COPY's row sink: rows reach the spool whole and in order while a thread drains
them, past the spool's memory cap too; a spool that fails stops the COPY and its error is
raised."""

from __future__ import annotations

import tempfile
import time

import pytest

from pagila_tasks.pg.rowsink import RowSink


def _rows(n: int) -> list[bytes]:
    return [f"{i}\t{'x' * (i % 97)}\n".encode() for i in range(n)]


def test_rows_reach_the_spool_in_order_and_spill_past_the_cap() -> None:
    rows = _rows(200_000)
    with tempfile.SpooledTemporaryFile(max_size=1 << 20) as spool:
        with RowSink(spool, interval=0.001) as sink:
            for i, row in enumerate(rows):
                sink.write(row)  # what psycopg2 calls, once per row
                if i % 50_000 == 0:
                    time.sleep(0.01)  # let the drain run mid-stream
        expected = b"".join(rows)
        assert sink.moved == len(expected) == spool.tell()
        assert spool._rolled  # type: ignore[attr-defined]  # spilled to disk past the cap
        spool.seek(0)
        assert spool.read() == expected


def test_a_spool_that_fails_aborts_the_copy_and_its_error_is_raised() -> None:
    class Full:
        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

    aborted: list[bool] = []
    sink = RowSink(Full(), abort=lambda: aborted.append(True), interval=0.001)
    with pytest.raises(OSError, match="No space left"), sink:
        for row in _rows(1000):
            sink.write(row)
        time.sleep(0.05)
    assert aborted == [True]
    assert sink._rows == []  # what came after the failure was not kept in memory
