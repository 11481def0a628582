"""The loader end to end: real PostgreSQL, Redis and worker processes, driven by pagila-submit."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.support import query, scalar, submit, submit_json

pytestmark = pytest.mark.e2e

EXPECTED = {
    "actor": 200,
    "film": 1000,
    "customer": 599,
    "rental": 16044,
    "payment": 16049,
    "language": 6,
}
SEQUENCES = {
    "actor_actor_id_seq": 200,
    "address_address_id_seq": 605,
    "category_category_id_seq": 16,
    "city_city_id_seq": 600,
    "country_country_id_seq": 109,
    "customer_customer_id_seq": 599,
    "film_film_id_seq": 1000,
    "inventory_inventory_id_seq": 4581,
    "language_language_id_seq": 6,
    "payment_payment_id_seq": 32098,
    "rental_rental_id_seq": 16049,
    "staff_staff_id_seq": 1500,
    "store_store_id_seq": 500,
}


def counts(dsn: str) -> dict[str, int]:
    return {t: scalar(dsn, f"SELECT count(*) FROM public.{t}") for t in EXPECTED}


def audit_rows(dsn: str) -> list[tuple]:
    return query(
        dsn,
        "SELECT succeeded, error, rental_count, run_id FROM "
        "pagila_support.pagila_load_audit ORDER BY id",
    )


def test_first_load_second_skip_and_force(workers: list[int], servers) -> None:
    """A first load gives Pagila's counts and sequences; a second skips; --force reloads."""
    code, out = submit_json("load")
    assert code == 0, out
    assert out["state"] == "succeeded"
    assert counts(servers.source_dsn) == EXPECTED
    seqs = dict(
        query(
            servers.source_dsn,
            "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'",
        )
    )
    assert seqs == SEQUENCES
    assert scalar(servers.source_dsn, "SELECT count(*) FROM public.rental_by_category") > 0
    assert (
        scalar(servers.source_dsn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        is False
    )

    proc = submit("load")
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stdout and "already loaded at" in proc.stdout

    code, out = submit_json("load", "--force")
    assert code == 0 and out["state"] == "succeeded"
    rows = audit_rows(servers.source_dsn)
    assert [r[0] for r in rows] == [True, True]
    assert all(r[2] == 16044 for r in rows)


def _drop_terminator(data: bytes) -> bytes:
    i = data.index(b"COPY public.rental ")
    j = data.index(b"\n\\.\n", i)
    return data[: j + 1] + data[j + 4 :]


def _wrong_columns(data: bytes) -> bytes:
    i = data.index(b"COPY public.actor ")
    j = data.index(b"\n", data.index(b"\n", i) + 1)
    return data[:j] + b"\textra" + data[j:]


def _not_utf8(data: bytes) -> bytes:
    i = data.index(b"COPY public.film ")
    j = data.index(b"\n", data.index(b"\n", i) + 1)
    return data[:j] + b"\xff\xfe" + data[j:]


@pytest.mark.parametrize(
    ("case", "edit", "file_name", "words"),
    [
        ("no terminator", _drop_terminator, "pagila-data.sql", "no terminating"),
        ("wrong columns", _wrong_columns, "pagila-data.sql", "columns, expected 4"),
        ("not utf-8", _not_utf8, "pagila-data.sql", "not UTF-8"),
        ("schema statement", "schema", "pagila-schema.sql", "statement failed"),
    ],
)
def test_bad_input_keeps_the_earlier_load(
    workers: list[int], servers, workers_files: Path, case, edit, file_name, words
) -> None:
    """Bad input: exit 1, an error naming file and line, earlier data intact, a failed audit row."""
    assert submit("load").returncode == 0
    before = counts(servers.source_dsn)
    schema, data = workers_files / "pagila-schema.sql", workers_files / "pagila-data.sql"
    if edit == "schema":
        schema.write_bytes(
            schema.read_bytes().replace(
                b"CREATE TABLE public.inventory (", b"CREATE TABLE public.inventory (("
            )
        )
    else:
        data.write_bytes(edit(data.read_bytes()))
    code, out = submit_json("load")
    assert code == 1, out
    assert file_name in out["error"] and words in out["error"], out["error"]
    assert f"{file_name}:" in out["error"]  # file:line
    assert counts(servers.source_dsn) == before
    last = audit_rows(servers.source_dsn)[-1]
    assert last[0] is False and words in last[1] and file_name in last[1]


def test_a_missing_file_is_refused_before_the_run(
    workers: list[int], servers, workers_files: Path
) -> None:
    """A data file missing on the workers: exit 2 at submit, one line naming it; no run, no
    lock, no ledger row, the earlier load intact."""
    assert submit("load").returncode == 0
    before = counts(servers.source_dsn)
    rows = audit_rows(servers.source_dsn)
    (workers_files / "pagila-data.sql").unlink()
    proc = submit("load")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pagila-data.sql" in lines[0] and "file not found" in lines[0]
    assert counts(servers.source_dsn) == before
    assert audit_rows(servers.source_dsn) == rows
    from tests.support import redis_client

    assert redis_client().get("pagila:lock") is None


def test_failed_hash_loads_again_instead_of_skipping(workers: list[int], servers) -> None:
    """Files whose newest audit row failed are loaded again, not skipped."""
    assert submit("load").returncode == 0
    with servers_conn(servers.source_dsn) as cur:
        cur.execute("UPDATE pagila_support.pagila_load_audit SET succeeded = false, error = 'x'")
    code, out = submit_json("load")
    assert code == 0 and out["state"] == "succeeded"
    assert out["result"]["status"] == "loaded"


class servers_conn:
    """A committed cursor on a DSN."""

    def __init__(self, dsn: str) -> None:
        import psycopg2

        self.conn = psycopg2.connect(dsn)

    def __enter__(self):
        return self.conn.cursor()

    def __exit__(self, *exc: object) -> None:
        self.conn.commit()
        self.conn.close()


def test_concurrent_loads_one_runs_one_exit_3(workers: list[int]) -> None:
    """Two loads at once: one run, and the other exits 3 naming the holder."""
    results: list = [None, None]
    barrier = threading.Barrier(2)

    def go(i: int) -> None:
        barrier.wait()
        results[i] = submit("load", "--force")

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 3], [(r.returncode, r.stderr) for r in results]
    locked = next(r for r in results if r.returncode == 3)
    assert "holds the lock since" in locked.stderr and "load-" in locked.stderr


def test_load_runs_as_plain_database_owner(servers) -> None:
    """The test roles own their databases and are neither superuser nor CREATEROLE."""
    row = query(
        servers.source_dsn,
        "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user",
    )
    assert row == [(False, False)]
    assert os.environ["PAGILA_SOURCE_DSN"] == servers.source_dsn


BLOCK_ROWS = 20_480
PAYLOAD = 10_240  # 20,480 rows x 10 KiB = 200 MiB in one COPY block


@pytest.mark.slow
def test_a_200_mb_block_streams_with_flat_memory(servers, workers_files: Path, isolated) -> None:
    """A data file with a 200 MB COPY block loads with the worker's peak RSS far below 200 MB."""
    from tests.support import children, peak_rss_kib

    data = workers_files / "pagila-data.sql"
    original = data.read_bytes()
    # A data file may COPY only into the pinned tables: the block is actor's, grown.
    block = original.index(b"COPY public.actor ")
    end = original.index(b"\n\\.\n", block) + 1
    with data.open("wb") as out:
        out.write(original[:end])
        for i in range(BLOCK_ROWS):
            row = b"%d\tBIG\t" % (1000 + i) + (b"%08d" % i) * (PAYLOAD // 8)
            out.write(row + b"\t2022-02-15 09:34:33+00\n")
        out.write(original[end:])
    assert data.stat().st_size > 200 * 1024 * 1024
    with isolated({}) as iso:
        pool = iso.pool(1, prefix="mem", queues="control")
        code, out = iso.submit_json("load", timeout=600)
        assert code == 0, out
        assert out["result"]["counts"]["actor"] == 200 + BLOCK_ROWS
        pids = [pool.pids[0], *children(pool.pids[0])]
        peak_mib = max(peak_rss_kib(p) for p in pids) / 1024
    assert scalar(servers.source_dsn, "SELECT count(*) FROM public.actor") == 200 + BLOCK_ROWS
    print(f"peak worker RSS while loading a 200 MiB block: {peak_mib:.0f} MiB")
    assert peak_mib < 150, f"worker peaked at {peak_mib:.0f} MiB: the block was buffered"
