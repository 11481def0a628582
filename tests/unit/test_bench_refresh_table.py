"""The refresh benchmark's table: one pass as measured, several as medians with every pass."""

from __future__ import annotations

from typing import Any

from bench.refresh import table_text

MB = 1024 * 1024


def _pass(full: float, changed: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"what": "full copy", "seconds": full, "units": "23/23", "bytes": 110 * MB},
        {"what": "1 % changed", "seconds": changed, "units": "0/21", "bytes": 2 * MB},
    ]
    for r in rows:
        r |= {"written": r["bytes"], "reason": f"why {r['what']}"}
        r["share"] = round(r["seconds"] / full, 3)
        r["bytes_share"] = r["written_share"] = round(r["bytes"] / (110 * MB), 3)
    return rows


def test_one_pass_is_shown_as_measured() -> None:
    text = table_text([_pass(10.0, 4.0)])
    assert "| 1 % changed | 4.00 | 40.0 % | 0/21 | 2.0 | 1.8 % | 2.0 | 1.8 % |" in text
    assert "each pass" not in text
    assert "- 1 % changed: why 1 % changed" in text


def test_several_passes_give_medians_of_their_own_shares_and_list_each() -> None:
    """Each share is of its own pass's full copy: the median share is not the ratio of the
    median seconds."""
    text = table_text([_pass(10.0, 4.0), _pass(8.0, 4.0), _pass(12.0, 3.0)])
    row = next(line for line in text.splitlines() if line.startswith("| 1 % changed"))
    assert row.startswith("| 1 % changed | 4.00 | 40.0 % |")
    assert row.endswith("| 40.0 %, 50.0 %, 25.0 % |")
    assert text.splitlines()[1].count("---:") == 8
