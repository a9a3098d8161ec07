"""Pick TCP ports for local services.

A port handed out here can still be taken by someone else before the service binds it
(the usual time-of-check/time-of-use race); callers should treat a bind failure as a
startup error, which the supervisor's readiness check reports.
"""

from __future__ import annotations

import socket


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that is currently unused on `host`, chosen by the kernel."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could bind `host:port` right now.

    SO_REUSEADDR mirrors what uvicorn does, so a port that only has connections lingering
    in TIME_WAIT counts as free, while a port with a live listener does not.
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
