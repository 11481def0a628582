"""The run's own folder of files (sql_dir) and PAGILA_SQL_ROOTS, without a server or worker
(the load task's side is in tests/e2e/test_loader_guard.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_sql_dir_under_a_root_loads_and_tilde_is_never_expanded(
    tmp_path: Path, pagila_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder under PAGILA_SQL_ROOTS is accepted (resolved); the same folder named through ~
    is refused, whatever HOME says."""
    import os

    from pagila_tasks.base.errors import InputError
    from pagila_tasks.config import from_env
    from pagila_tasks.load import loader

    for name in ("pagila-schema.sql", "pagila-data.sql"):
        (tmp_path / name).symlink_to(pagila_dir / name)
    s = from_env({**os.environ, "PAGILA_SQL_ROOTS": f"{tmp_path}{os.pathsep}{pagila_dir}"})
    assert loader.run_folder(s, str(tmp_path)) == tmp_path.resolve()
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(InputError, match="not an allowed folder"):
        loader.run_folder(s, "~")
    for path in ("relative/folder", f"{tmp_path}/\x00"):
        with pytest.raises(InputError, match="not an allowed folder"):
            loader.run_folder(s, path)


def test_sql_roots_setting(tmp_path: Path) -> None:
    """PAGILA_SQL_ROOTS defaults to PAGILA_SQL_DIR and the download cache, splits on os.pathsep,
    and refuses relative folders and an empty value."""
    import os

    from pagila_tasks.base.errors import ConfigError
    from pagila_tasks.config import from_env

    base = {k: v for k, v in os.environ.items() if k != "PAGILA_SQL_ROOTS"}
    env = {**base, "PAGILA_SQL_DIR": str(tmp_path), "PAGILA_CACHE_DIR": "/var/cache/p"}
    assert from_env(env).sql_roots == (tmp_path, Path("/var/cache/p"))
    assert from_env({**env, "PAGILA_SQL_ROOTS": f"/a{os.pathsep}/b"}).sql_roots == (
        Path("/a"),
        Path("/b"),
    )
    for bad in ("relative", " "):
        with pytest.raises(ConfigError, match="PAGILA_SQL_ROOTS"):
            from_env({**env, "PAGILA_SQL_ROOTS": bad})
