"""Who holds a lease, and whether that process is still alive.

A lease names its owner by host name, boot id (``/proc/sys/kernel/random/
boot_id``, new at every boot), pid and the process's start time (field 22 of
``/proc/<pid>/stat``, in clock ticks since boot). On the owner's own host and
boot, a reader can tell for sure whether the owner still runs: the pid must
exist *and* have the same start time, so a pid reused by a later process is
not mistaken for the owner. A lease of another boot of this host belongs to a
process that died with that boot. For another host nothing can be checked,
and the lease's expiry decides (``_leases.py``).

Without ``/proc`` (macOS), the start time is unknown and a pid that exists
counts as alive (``os.kill(pid, 0)``): a reused pid then keeps a dead
owner's lease until it expires.

Containers that share one kernel share its boot id; if two of them also
share a host name and mount the same cache, a pid of one is looked up in the
other's pid namespace and judged dead: a vector may then be computed twice
(never a wrong one, see ``_leases.py``).
"""

from __future__ import annotations

import functools
import os
import socket

__all__ = ["boot_id", "current_owner", "owner_alive", "process_start_time"]


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def boot_id() -> str:
    """This boot's id, or ``""`` where the kernel does not give one."""
    return (_read("/proc/sys/kernel/random/boot_id") or "").strip()


def process_start_time(pid: int) -> int | None:
    """Start time of process ``pid`` (clock ticks since boot), None if it does
    not exist or ``/proc`` cannot tell."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def current_owner() -> dict:
    """The identity of the calling process, as written into its leases:
    ``pid``, ``host``, ``boot`` and ``start`` (None without ``/proc``).
    Computed anew at each call, so a forked child is not its parent."""
    pid = os.getpid()
    return dict(
        pid=pid,
        host=socket.gethostname(),
        boot=boot_id(),
        start=process_start_time(pid),
    )


def owner_alive(record: dict) -> bool | None:
    """True/False when ``record``'s owner runs on this host (and boot) or not;
    None when it runs elsewhere and only its lease's expiry can tell."""
    if record.get("host") != socket.gethostname():
        return None
    if record.get("boot") != boot_id():
        return False  # this host rebooted since: the owner died with its boot
    try:
        pid = int(record["pid"])
    except (KeyError, TypeError, ValueError):
        return None
    start = process_start_time(pid)
    if record.get("start") is not None and os.path.isdir("/proc/self"):
        return start is not None and start == record["start"]
    return _pid_exists(pid)
