"""Who runs the stack's servers and who may read its files.

The state folder holds passwords, logs of every task (arguments included) and Redis's
append-only file (every queued message): files are 0600 and folders 0700, owned by the user
who runs ``pagila-stack``. Under root, PostgreSQL (which refuses root) and Redis (which needs
no root) run as the unprivileged system user :data:`RUN_AS_USER`; the folders that user must
cross are then 0710 with its group, so it can traverse them and nobody else can. A folder above
them that grants others nothing (``/root`` is 0700) is never widened: the stack refuses and says
what to change (see :func:`make_traversable`).
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pagila_stack import StackError

RUN_AS_USER = "pagila-pg"
PRIVATE_UMASK = 0o077
"""Files that servers and stack processes create are readable by their owner only."""
_SECRET_PREFIXES = ("PAGILA_", "FLOWER_", "PGPASSWORD", "REDISCLI_AUTH")


def ensure_run_user() -> pwd.struct_passwd | None:
    """Under root, the unprivileged system user that runs the servers (created once)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(RUN_AS_USER)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_AS_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(RUN_AS_USER)


class RunsAsServerUser:
    """A server run, under root, as the unprivileged user of :func:`ensure_run_user`; looked up
    (or created) on first need, so ``status`` never creates it."""

    _user_checked = False
    _user_entry: pwd.struct_passwd | None = None

    @property
    def _user(self) -> pwd.struct_passwd | None:
        if not self._user_checked:
            self._user_entry = ensure_run_user()
            self._user_checked = True
        return self._user_entry


def add_mode(path: Path, bits: int) -> None:
    """Add permission ``bits`` to ``path`` only where missing (never removes any)."""
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(stat.S_IMODE(mode) | bits)


def can_traverse(path: Path, user: pwd.struct_passwd) -> bool:
    """True when ``user`` may cross folder ``path`` (owner, then group, then other bits)."""
    st = path.stat()
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == user.pw_gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def make_traversable(
    path: Path, bits: int = stat.S_IXOTH, user: pwd.struct_passwd | None = None
) -> None:
    """Let other users traverse every folder above ``path`` (o+x where missing).

    With ``user``, folders that user can already cross are left alone, so the stack's own
    0710 folders do not become traversable by everyone. A folder that grants others nothing
    (0700, 0750: private) is never widened: :class:`StackError` names it and what to change
    instead, and no folder's mode is changed.
    """
    wanted = [p for p in path.resolve().parents if user is None or not can_traverse(p, user)]
    for parent in wanted:
        mode = stat.S_IMODE(parent.stat().st_mode)
        if mode & bits != bits and not mode & stat.S_IRWXO:
            who = user.pw_name if user is not None else "other users"
            raise StackError(
                f"{who} cannot reach {path}: {parent} is private (mode {mode:04o}) and is left "
                f"so; put the stack's state folder (--state or PAGILA_STACK_DIR) and the server "
                f"binaries outside it (e.g. under /srv or /opt), or, if every user may cross "
                f"{parent}, run: chmod o+x {parent}"
            )
    for parent in wanted:
        add_mode(parent, bits)


def private_dir(path: Path, user: pwd.struct_passwd | None = None, owner: bool = False) -> None:
    """Create ``path`` and make it 0700; under root, share it with ``user``.

    ``owner=True`` gives the folder to ``user`` (a server's data folder, 0700); otherwise it
    stays ours and ``user``'s group may only traverse it (0710).
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if user is None:
        path.chmod(0o700)
    elif owner:
        os.chown(path, user.pw_uid, user.pw_gid)
        path.chmod(0o700)
    else:
        os.chown(path, -1, user.pw_gid)
        path.chmod(0o710)


def prepare_state_dir(state_dir: Path, shared: Sequence[str], own: Sequence[str]) -> None:
    """Create a stack's state folder and its sub-folders, private; idempotent.

    ``shared`` sub-folders are ones the server user must cross under root (0710 with its
    group); ``own`` ones only we use (0700). Log files of an older, laxer version become 0600.
    """
    user = ensure_run_user()
    private_dir(state_dir, user)
    for sub in shared:
        private_dir(state_dir / sub, user)
    for sub in own:
        private_dir(state_dir / sub)
    for old_log in (state_dir / "logs").glob("*.log"):
        old_log.chmod(0o600)
    gitignore = state_dir / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("# Everything here is local state of pagila-stack.\n*\n")
    if user is not None:
        make_traversable(state_dir, user=user)


def private_file(path: Path, user: pwd.struct_passwd | None = None) -> None:
    """Create ``path`` if missing and make it 0600, owned by ``user`` when given."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)


def give_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    """Make every file under ``path`` 0600 and folder 0700, owned by ``user`` when given.

    A server's data folder from an older stack may hold files created as root or with a wider
    mode (a world-readable append-only file); this brings them in line before it starts.
    """
    for folder, dirs, files in os.walk(path):
        for name in dirs:
            _own(Path(folder) / name, user, 0o700)
        for name in files:
            _own(Path(folder) / name, user, 0o600)
    _own(path, user, 0o700)


def _own(path: Path, user: pwd.struct_passwd | None, mode: int) -> None:
    if path.is_symlink():
        return
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(mode)


def run_as_kwargs(user: pwd.struct_passwd | None, home: Path) -> dict[str, Any]:
    """``subprocess`` keyword arguments that run a server as ``user`` with a private umask.

    The unprivileged user gets our environment without the pipeline's secrets (DSNs, the
    Redis URL, Flower's login): a server needs none of them.
    """
    if user is None:
        return {"umask": PRIVATE_UMASK}
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SECRET_PREFIXES)}
    return {
        "user": user.pw_uid,
        "group": user.pw_gid,
        "extra_groups": [],
        "umask": PRIVATE_UMASK,
        "env": {**env, "HOME": str(home), "USER": user.pw_name},
    }


def write_secret(path: Path, data: dict[str, str]) -> None:
    """Write JSON readable by the owner only, created 0600 so it is never briefly wider."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
