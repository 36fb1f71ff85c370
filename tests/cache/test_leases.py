"""Per-key leases (``cache/_leases.py``): claim, renew, release, take over.

Leases of other hosts, boots or dead processes are real files written in the
documented format (what such a process would have left), never a patched
clock or filesystem. Dead processes are real ones killed with SIGKILL.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import mounted_tmpfs

from embedclf.cache._lease_owner import boot_id, owner_alive, process_start_time
from embedclf.cache._leases import Leases
from embedclf.cache._store import EmbeddingCache

FP = "f" * 16
KEYS = [f"{i:064x}" for i in range(4)]


def _leases(tmp_path, ttl=600):
    return Leases(tmp_path / "c.h5.leases", ttl=ttl, cache_path=str(tmp_path / "c.h5"))


def _plant(leases, key, *, age=0.0, **owner):
    """Write the lease of ``key`` as another process would have, ``age`` s old."""
    record = dict(
        pid=os.getpid(),
        host=socket.gethostname(),
        boot=boot_id(),
        start=process_start_time(os.getpid()),
        token="0123abcd" * 4,
        ttl=30,
        expires=time.time() + 30,
    )
    record.update(owner)
    path = leases.path_for(FP, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_text(json.dumps(record))
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_claim_release_and_the_record(tmp_path):
    mine, other = _leases(tmp_path), _leases(tmp_path)
    assert mine.claim(FP, KEYS) == ([0, 1, 2, 3], [])
    path = mine.path_for(FP, KEYS[0])
    assert Path(path).parent == tmp_path / "c.h5.leases"
    record = json.loads(Path(path).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert record["start"] == process_start_time(os.getpid()) is not None
    assert record["boot"] == boot_id() and len(record["token"]) == 32
    assert record["ttl"] == 600 and abs(record["expires"] - time.time() - 600) < 60
    assert owner_alive(record) is True
    # A second claimer (another handle, as another thread) is refused...
    assert other.claim(FP, KEYS[:2] + ["e" * 64]) == ([2], [0, 1])
    # ...until the owner releases; releasing what one does not hold is a no-op.
    other.release(FP, KEYS[:2])
    assert os.path.exists(path)
    mine.release(FP, KEYS)
    assert sorted(os.listdir(tmp_path / "c.h5.leases")) == [
        os.path.basename(other.path_for(FP, "e" * 64))
    ]
    assert other.claim(FP, KEYS[:2]) == ([0, 1], [])
    # Another namespace is another lease.
    assert mine.claim("g" * 16, KEYS[:1]) == ([0], [])


def test_held_leases_are_renewed(tmp_path):
    leases = _leases(tmp_path, ttl=0.6)
    assert leases.claim(FP, KEYS) == ([0, 1, 2, 3], [])
    paths = [leases.path_for(FP, k) for k in KEYS]
    past = time.time() - 100
    for p in paths:
        os.utime(p, (past, past))
    assert leases.renew() == 1  # the batch's leases share one inode
    assert all(time.time() - os.stat(p).st_mtime < 5 for p in paths)
    # The daemon thread renews every ttl / 3 on its own.
    for p in paths:
        os.utime(p, (past, past))
    time.sleep(0.6)
    assert all(time.time() - os.stat(p).st_mtime < 0.5 for p in paths)
    stranger = _leases(tmp_path, ttl=0.6)
    assert stranger.claim(FP, KEYS) == ([], [0, 1, 2, 3])
    leases.release(FP, KEYS)
    time.sleep(0.5)  # the thread stops once nothing is held
    assert leases._renewer is None


_HOLDER = """
import sys, time
from embedclf.cache._leases import Leases
leases = Leases(sys.argv[1], ttl=600)
print(leases.claim("f" * 16, sys.argv[2:]), flush=True)
time.sleep(1000)
"""


def _start_holder(leases, keys):
    """A process that claims ``keys`` of ``FP`` and sleeps; returned once its
    claim is made (it must have got them all)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, leases.folder, *keys],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == f"({list(range(len(keys)))}, [])"
    return holder


def test_a_dead_owners_lease_is_taken_over_at_once(tmp_path):
    leases = _leases(tmp_path)
    holder = _start_holder(leases, KEYS[:2])
    try:
        record = json.loads(Path(leases.path_for(FP, KEYS[0])).read_text())
        assert record["pid"] == holder.pid and owner_alive(record) is True
        assert leases.claim(FP, KEYS[:3]) == ([2], [0, 1])  # its owner lives
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    assert owner_alive(record) is False
    assert leases.claim(FP, KEYS[:2]) == ([0, 1], [])  # well within the ttl


def test_a_reused_pid_or_an_earlier_boot_does_not_keep_a_lease(tmp_path):
    leases = _leases(tmp_path)
    start = process_start_time(os.getpid())
    _plant(leases, KEYS[0])  # this very process: alive
    _plant(leases, KEYS[1], start=start + 1)  # our pid, but another process
    _plant(leases, KEYS[2], boot="00000000-0000-0000-0000-000000000000")
    assert leases.claim(FP, KEYS[:3]) == ([1, 2], [0])


def test_other_hosts_leases_hold_until_they_expire(tmp_path):
    leases = _leases(tmp_path)
    far = dict(host="elsewhere.example", pid=1, boot="b", start=1)
    _plant(leases, KEYS[0], age=25, **far)  # ttl 30: alive for 5 s more
    _plant(leases, KEYS[1], age=31, **far)
    _plant(leases, KEYS[2], age=31, **dict(far, ttl=60))  # its own ttl counts
    Path(leases.path_for(FP, KEYS[3])).write_text("")  # torn by a crash
    assert leases.claim(FP, KEYS) == ([1], [0, 2, 3])
    old = time.time() - 700
    os.utime(leases.path_for(FP, KEYS[3]), (old, old))  # older than our ttl
    assert leases.claim(FP, KEYS[3:]) == ([0], [])


@pytest.mark.parametrize("workers", ["threads", "processes"])
def test_concurrent_breakers_exactly_one_wins(tmp_path, workers):
    """Many claimers hammer the same stale lease at the same moment, one lease
    after another: each is won by exactly one of them."""
    keys = [f"{i:064x}" for i in range(150)]
    planter = _leases(tmp_path)
    for key in keys:
        _plant(planter, key, age=100, host="elsewhere.example")
    n = 6 if workers == "threads" else 3  # processes: about one per core
    if workers == "threads":
        barrier, won = threading.Barrier(n), {}

        def claimer(i):
            leases = _leases(tmp_path)
            won[i] = []
            for key in keys:
                barrier.wait()  # all at once, for every key
                won[i] += [key] if leases.claim(FP, [key])[0] else []

        threads = [threading.Thread(target=claimer, args=(i,)) for i in range(n)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads inside every step of a claim
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(interval)
        winners = [k for got in won.values() for k in got]
    else:
        # Each process claims key k at the wall-clock time t0 + 4 ms * k.
        code = (
            "import sys, time\n"
            "from embedclf.cache._leases import Leases\n"
            f"leases = Leases({planter.folder!r}, ttl=600)\n"
            f"keys, t0, won = {keys!r}, float(sys.argv[1]), []\n"
            "for k, key in enumerate(keys):\n"
            "    time.sleep(max(0, t0 + 0.004 * k - time.time() - 0.001))\n"
            "    while time.time() < t0 + 0.004 * k: pass\n"
            f"    if leases.claim({FP!r}, [key])[0]: won.append(key)\n"
            "print(won, flush=True)\n"
            "sys.stdin.read()\n"  # alive until all are done: a dead winner's
        )  # leases would rightly be taken over by a latecomer
        t0 = str(time.time() + 3.0)  # all started and spinning by then
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, t0],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        winners = [k for p in procs for k in eval(p.stdout.readline())]
        for p in procs:
            p.communicate(timeout=60)
    assert sorted(winners) == keys  # each lease won by exactly one claimer
    leftovers = [f for f in os.listdir(planter.folder) if not f.endswith(".lease")]
    assert leftovers == []  # break guards and renamed leases are gone


def test_leftovers_of_killed_claimers_are_swept(tmp_path):
    planter = _leases(tmp_path)
    stale = _plant(planter, KEYS[0], age=100, host="elsewhere.example")
    live = _plant(planter, KEYS[2])  # this process: alive, kept
    fresh = _plant(planter, KEYS[3], age=5, host="elsewhere.example")  # kept
    folder = Path(planter.folder)
    old = time.time() - 1000
    for name in (".tmp-dead", os.path.basename(stale) + ".break-x", "a.lease.stale-1"):
        (folder / name).write_text("x")
        os.utime(folder / name, (old, old))
    (folder / ".tmp-fresh").write_text("x")  # a claim in progress: kept
    _leases(tmp_path).claim(FP, KEYS[1:2])  # another key: the stale one is
    assert sorted(os.listdir(folder)) == sorted(  # broken by the sweep
        [
            ".tmp-fresh",
            os.path.basename(live),
            os.path.basename(fresh),
            os.path.basename(planter.path_for(FP, KEYS[1])),
        ]
    )
    assert not os.path.exists(stale)


def test_the_sweep_removes_the_leases_of_a_killed_process(tmp_path):
    leases = _leases(tmp_path)
    holder = _start_holder(leases, KEYS[:2])
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    assert os.path.exists(leases.path_for(FP, KEYS[0]))
    assert leases.claim(FP, KEYS[3:]) == ([0], [])  # other keys only
    assert sorted(os.listdir(leases.folder)) == [
        os.path.basename(leases.path_for(FP, KEYS[3]))
    ]


def test_a_break_guard_of_a_killed_breaker_expires(tmp_path):
    leases = _leases(tmp_path, ttl=600)
    stale = _plant(leases, KEYS[0], age=1000, host="elsewhere.example")
    leases._swept = True  # not the sweep: the claim itself must cope
    guard = Path(stale + ".break-" + "0123abcd" * 4)
    guard.touch()  # a breaker at work right now
    assert leases.claim(FP, KEYS[:1]) == ([], [0])
    old = time.time() - 700
    os.utime(guard, (old, old))  # a breaker killed mid-break, long ago
    assert leases.claim(FP, KEYS[:1]) == ([], [0])  # the guard is removed...
    assert not guard.exists()
    assert leases.claim(FP, KEYS[:1]) == ([0], [])  # ...and the lease broken


def test_the_cache_gives_its_leases(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.h5", lease_ttl=12)
    leases = cache.leases()
    assert leases is cache.leases() and leases.ttl == 12
    assert leases.folder == str(tmp_path / "c.h5") + ".leases"
    assert EmbeddingCache(tmp_path / "d.h5").leases().ttl == 30
    for bad in (0, -1, "30", None):
        msg = (
            "The 'lease_ttl' parameter of EmbeddingCache must be a positive "
            f"number of seconds. Got {bad!r} instead."
        )
        with pytest.raises(ValueError, match=re.escape(msg)):
            EmbeddingCache(tmp_path / "c.h5", lease_ttl=bad)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: a real, full filesystem (root only)."""
    with mounted_tmpfs(tmp_path / "disk", "1m", "") as mnt:
        yield mnt


def test_a_full_disk_says_what_to_do(small_disk):
    leases = Leases(small_disk / "c.h5.leases", cache_path=str(small_disk / "c.h5"))
    os.makedirs(leases.folder)
    with open(small_disk / "filler", "wb") as fh:
        with pytest.raises(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
    with pytest.raises(OSError) as info:
        leases.claim(FP, KEYS)
    assert info.value.errno == errno.ENOSPC
    assert str(info.value) == (
        f"[Errno 28] Cannot create a lease file in '{leases.folder}' of cache "
        f"'{small_disk}/c.h5' (No space left on device). Leases mark the images "
        "a process is embedding; nothing committed is lost. Free some disk "
        "space or choose another cache path, then run again."
    )
    assert os.listdir(leases.folder) == []  # no empty lease left behind
    os.remove(small_disk / "filler")
    assert leases.claim(FP, KEYS) == ([0, 1, 2, 3], [])
