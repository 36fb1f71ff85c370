"""Per-key leases: which process is computing which vector right now.

Several processes sharing one cache must not run the backbone twice on the
same image, yet should embed *different* images at the same time. A lease
is a small file ``<cache>.leases/<hash>.lease``, one per (namespace
fingerprint, content key), named by the first 32 hex digits of the SHA-256
of both. ``embedding/_compute_once.py`` claims the leases of the keys a batch
misses, computes the ones it won, commits them to the cache and only then
releases them; keys whose lease another live process holds are waited for
(they are in the cache once it releases) or taken over (if it dies).

Why leases, not the former global compute lock: that lock was held across
the backbone call, so N processes embedded one batch at a time (item 16 of
the benchmarks measures both). Why files and not ``fcntl`` byte-range locks
on one file: POSIX record locks do not work reliably across hosts on NFS,
and a process loses all its locks on a file as soon as *any* of its file
descriptors on that file is closed (by another thread or library), which
would silently drop every lease of the process.

Claim: the owner's record (JSON: ``pid``, ``host``, ``boot`` id, process
``start`` time, a random ``token``, ``ttl``, first ``expires`` time) is
written to a temp file once per batch, then hard-linked (``os.link``, which
fails if the name exists, atomically, also on NFS) under each key's lease
name, so a reader never sees a half-written lease. Where hard links are not
supported, each lease is created with ``O_CREAT | O_EXCL`` and written.

Renewal: while leases are held, a daemon thread bumps their mtime every
``ttl / 3`` seconds (one ``utime`` renews a whole batch, the names share one
inode). A lease expires at its mtime + its ``ttl``.

Takeover: a lease is broken when its owner is known dead (same host and
boot, and the pid is gone or has another start time: ``_lease_owner.py``),
when it comes from an earlier boot of this host, or, for other hosts, when
it has expired. Breaking is race-free among breakers: the breaker first
creates ``<lease>.break-<token of that lease>`` with ``O_EXCL`` (one winner
per stale lease), checks that the lease still holds that token, renames it
to a unique name and deletes it, then claims again with an exclusive link,
which at most one process wins. A break file left by a breaker killed in
those few milliseconds is removed once it is older than ``ttl``.

When it can be fooled: clocks of different hosts that disagree by more than
``ttl``, or a process on another host paused (stopped, swapped out, its
network down) for longer than ``ttl``: its lease is then taken over while it
still computes. The cost is a vector computed twice, never a wrong vector:
vectors are keyed by content (the same bytes through the same backbone),
and a key committed twice is still one key to every lookup. Leases are
advisory and only about work; the cache's own file lock still guards every
read and write of the cache files.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import threading
import time

from embedclf.cache._lease_owner import current_owner, owner_alive

__all__ = ["Leases"]

_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class Leases:
    """The leases of one cache: claim, renew and release them.

    Parameters
    ----------
    folder : str
        The lease folder, ``<cache>.leases``; created on the first claim.
    ttl : float, default=30
        Seconds a lease lives without renewal. Leases are renewed every
        ``ttl / 3`` s while held, so only a dead or stalled owner lets one
        expire.
    cache_path : str, optional
        The cache file, named in error messages.
    """

    def __init__(self, folder, *, ttl=30.0, cache_path=None):
        self.folder = os.fspath(folder)
        self.ttl = float(ttl)
        self.cache_path = cache_path
        self._held: dict[str, tuple] = {}  # lease path -> (dev, ino, token)
        self._mutex = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._hard_links = True
        self._swept = False

    def path_for(self, fingerprint: str, key: str) -> str:
        """The lease file of ``key`` in namespace ``fingerprint``."""
        digest = hashlib.sha256(f"{fingerprint}\0{key}".encode()).hexdigest()
        return os.path.join(self.folder, digest[:32] + ".lease")

    # -- claiming ----------------------------------------------------------------
    def claim(self, fingerprint: str, keys) -> tuple[list[int], list[int]]:
        """Claim the leases of ``keys`` without waiting.

        Returns
        -------
        claimed : list of int
            Positions in ``keys`` whose lease this call now holds.
        deferred : list of int
            Positions whose lease a live owner holds (or whose stale lease
            another process is breaking right now).

        Raises
        ------
        PermissionError, OSError
            If the lease folder cannot be created or written (not writable,
            disk full), naming the folder and the fix.
        """
        keys = list(keys)
        claimed, deferred = [], []
        if not keys:
            return claimed, deferred
        self._sweep_once()
        record = dict(
            current_owner(),
            token=secrets.token_hex(16),
            ttl=self.ttl,
            expires=time.time() + self.ttl,
        )
        data = json.dumps(record).encode()
        anchor = os.path.join(self.folder, f".tmp-{record['token']}")
        if self._hard_links:
            self._create(anchor, data)
        won = {}
        try:
            for i, key in enumerate(keys):
                path = self.path_for(fingerprint, key)
                ident = self._claim_one(path, anchor, data, record["token"])
                if ident is None:
                    deferred.append(i)
                else:
                    claimed.append(i)
                    won[path] = ident
        except BaseException:  # the caller cannot know what was won: give it up
            self._remove(won)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(anchor)
        with self._mutex:
            self._held.update(won)
            if won and self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_loop, name="embedclf-leases", daemon=True
                )
                self._renewer.start()
        return claimed, deferred

    def _claim_one(self, path, anchor, data, token):
        """(dev, ino, token) of the lease won at ``path``, or None."""
        for _ in range(4):
            try:
                st = self._publish(path, anchor, data)
                return st.st_dev, st.st_ino, token
            except FileExistsError:
                pass
            seen = _read(path)
            if seen is None:
                continue  # released meanwhile: claim again
            if not self._stale(*seen) or not self._break(path, *seen):
                return None
        return None

    def _publish(self, path, anchor, data):
        if self._hard_links:
            try:
                os.link(anchor, path)
                return os.stat(anchor)
            except FileExistsError:
                raise
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise self._error(exc, "a lease file") from exc
                self._hard_links = False  # e.g. a FUSE or SMB mount
        return self._create(path, data)

    def _create(self, path, data):
        """Write ``data`` to a new file ``path`` (O_EXCL); its stat."""
        try:
            fd = self._open_new(path)
        except FileNotFoundError:
            self._make_folder()
            fd = self._open_new(path)
        try:
            os.write(fd, data)
            return os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            fd = None
            with contextlib.suppress(OSError):
                os.remove(path)
            raise self._error(exc, "a lease file") from exc
        finally:
            if fd is not None:
                os.close(fd)

    def _open_new(self, path):
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except (FileExistsError, FileNotFoundError):
            raise
        except OSError as exc:
            raise self._error(exc, "a lease file") from exc

    def _make_folder(self):
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            raise self._error(exc, "the lease folder") from exc

    def _error(self, exc, what):
        """A clear error for a lease file or folder that cannot be made."""
        if what == "the lease folder":
            target = f"the lease folder {self.folder!r}"
            where = os.path.dirname(os.path.abspath(self.folder))
        else:
            target, where = f"a lease file in {self.folder!r}", self.folder
        if exc.errno in _NOT_WRITABLE:
            error = PermissionError(
                f"Cannot create {target} of cache {self.cache_path!r}: its "
                f"folder {where!r} is not writable ({exc.strerror}). The cache "
                "needs a writable folder even to read it (lock and lease "
                "files). Make the folder writable, copy the cache into a "
                "writable folder and pass that path, or run without a cache "
                "(cache=None; no --cache)."
            )
            error.errno = exc.errno
            return error
        if exc.errno in _FULL:
            return OSError(
                exc.errno,
                f"Cannot create {target} of cache {self.cache_path!r} "
                f"({exc.strerror}). Leases mark the images a process is "
                "embedding; nothing committed is lost. Free some disk space "
                "or choose another cache path, then run again.",
            )
        return exc

    # -- taking over ---------------------------------------------------------------
    def _stale(self, record, st) -> bool:
        """Whether the lease read as ``record`` (None: unreadable) may be broken."""
        if record is not None:
            alive = owner_alive(record)
            if alive is not None:
                return not alive
            ttl = record.get("ttl", self.ttl)
            ttl = float(ttl) if isinstance(ttl, (int, float)) else self.ttl
        else:  # torn by a crash while written (no hard links): age alone
            ttl = self.ttl
        return time.time() > st.st_mtime + max(0.0, ttl)

    def _break(self, path, record, st) -> bool:
        """Remove the stale lease ``path`` (read as ``record``, ``st``) unless
        another process is already at it. True if this call removed it."""
        token = record.get("token") if record else None
        if not (isinstance(token, str) and token.isalnum() and len(token) <= 64):
            token = f"{st.st_ino}x{st.st_mtime_ns}"
        guard = f"{path}.break-{token}"
        try:
            os.close(os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - os.stat(guard).st_mtime > self.ttl:
                    os.remove(guard)  # its breaker was killed mid-break
            return False
        except OSError as exc:
            raise self._error(exc, "a lease file") from exc
        try:
            again = _read(path)
            if again is None or not _same(again, (record, st)):
                return False  # broken (and perhaps claimed) by another already
            grave = f"{path}.stale-{secrets.token_hex(8)}"
            with contextlib.suppress(FileNotFoundError):  # released meanwhile
                os.rename(path, grave)
                os.remove(grave)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(guard)

    def _sweep_once(self):
        """Once per object: delete leftovers of processes killed mid-claim or
        mid-break, and break the stale leases of dead owners (which would
        otherwise stay until their key is claimed again)."""
        if self._swept:
            return
        self._swept = True
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        for name in names:
            path = os.path.join(self.folder, name)
            with contextlib.suppress(OSError):
                if ".stale-" in name:
                    os.remove(path)  # renamed to be deleted
                elif name.startswith(".tmp-") or ".break-" in name:
                    if time.time() - os.stat(path).st_mtime > self.ttl:
                        os.remove(path)
                elif name.endswith(".lease"):
                    seen = _read(path)
                    if seen is not None and self._stale(*seen):
                        self._break(path, *seen)

    # -- holding -------------------------------------------------------------------
    def release(self, fingerprint: str, keys) -> None:
        """Give up the leases of ``keys`` held by this object (others are
        left alone, also a lease that was taken over meanwhile)."""
        mine = {}
        with self._mutex:
            for key in keys:
                path = self.path_for(fingerprint, key)
                if path in self._held:
                    mine[path] = self._held.pop(path)
        self._remove(mine)

    @staticmethod
    def _remove(leases):
        """Delete the lease files ``{path: ident}`` that are still those."""
        for path, ident in leases.items():
            seen = _read(path)
            if seen is not None and _ident(seen) == ident:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)

    def held(self) -> list[str]:
        """Paths of the leases this object holds."""
        with self._mutex:
            return sorted(self._held)

    def renew(self) -> int:
        """Bump the mtime of every held lease now; the number of files touched."""
        with self._mutex:
            items = list(self._held.items())
        done, touched = set(), 0
        for path, ident in items:
            if ident[:2] in done:
                continue  # a batch's leases share one inode
            with contextlib.suppress(OSError):
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == ident[:2]:
                    os.utime(path)
                    done.add(ident[:2])
                    touched += 1
        return touched

    def _renew_loop(self):
        while True:
            time.sleep(self.ttl / 3)
            with self._mutex:
                if not self._held:
                    self._renewer = None
                    return
            self.renew()


def _read(path):
    """(record or None if unreadable, stat) of the lease ``path``; None if gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        data = os.read(fd, 65536)
    finally:
        os.close(fd)
    try:
        record = json.loads(data)
    except ValueError:
        record = None
    return (record if isinstance(record, dict) else None), st


def _ident(seen):
    record, st = seen
    return st.st_dev, st.st_ino, (record or {}).get("token")


def _same(a, b) -> bool:
    """The same lease generation: same inode and the same record."""
    return a[0] == b[0] and (a[1].st_dev, a[1].st_ino) == (b[1].st_dev, b[1].st_ino)
