"""Who holds a lease or runs a digest, and whether that process is certainly gone.

Holders are named ``host:pid:token``. A name this process made is registered here while in use,
so a holder with this host and this pid that is *not* registered belongs to an earlier process
that had the same pid (a container restarted as pid 1); a pid that no longer exists, or that is a
zombie, is gone too. Other hosts cannot be checked: their heartbeats or ages decide.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid

_lock = threading.Lock()
_live: set[str] = set()


def new_holder() -> str:
    """A fresh holder name for this process, registered as live until ``release``."""
    name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    with _lock:
        _live.add(name)
    return name


def mine(name: str | None) -> bool:
    """Whether ``name`` is a holder of this very process, still in use."""
    with _lock:
        return name in _live


def release(name: str) -> None:
    with _lock:
        _live.discard(name)


def gone(holder: str | None) -> str | None:
    """Why the process behind ``holder`` has certainly stopped, or None if it may be alive."""
    host, _, rest = (holder or "").partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    with _lock:
        if holder in _live:
            return None
    pid = int(pid_text)
    if pid == os.getpid():
        return f"an earlier process with the same id ({pid}) stopped"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"its process {pid} is gone"
    except PermissionError:
        return None  # alive, another user's
    if _is_zombie(pid):
        return f"its process {pid} has exited"
    return None


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in {"Z", "X"}
    except (OSError, IndexError):
        return False
