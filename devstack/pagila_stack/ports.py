"""TCP ports of the local stack on 127.0.0.1: the preferred ones, or free ones when taken."""

from __future__ import annotations

import socket

from pagila_stack import StackError

DEFAULT_PORTS = {"source": 5433, "target": 5444, "redis": 6379, "flower": 5555}


def port_free(port: int) -> bool:
    """True when 127.0.0.1:``port`` can be bound (SO_REUSEADDR, as the servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(preferred: int, claimed: set[int] | frozenset[int] = frozenset()) -> int:
    """``preferred`` if free, else a free port from the kernel; never one in ``claimed``."""
    if preferred not in claimed and port_free(preferred):
        return preferred
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in claimed:
            return port
    raise StackError(f"no free TCP port found on 127.0.0.1 (wanted {preferred})")
