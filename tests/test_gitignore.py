"""Running the README's commands in a clone leaves ``git status`` clean.

The paths come from the README itself (the main command's ``--cache`` and
``--output``, the Python examples' ``cache=`` and ``output=``), and the cache
files are made by the real ``EmbeddingCache`` and fit memo, in a scratch git
repository that holds only this ``.gitignore``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from embedclf.cache._store import CacheNamespace, EmbeddingCache
from embedclf.embedding._identity_memo import hash_paths
from embedclf.embedding._runtime import openvino_dir
from embedclf.workflow._train._fit_memo import memo_dir_for

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _main_command():
    block = README.split("<!-- main command -->", 1)[1]
    return re.search(r"```\n(.+?)\n```", block, re.S).group(1)


def _readme_outputs():
    command = _main_command()
    python = "\n".join(re.findall(r"```python\n(.+?)```", README, re.S))
    caches = re.findall(r"--cache (\S+)", command)
    caches += re.findall(r'cache="([^"]+)"', python)
    models = re.findall(r"--output (\S+)", command)
    models += re.findall(r'output="([^"]+)"', python)
    assert caches and models  # the README still names them
    return sorted(set(caches)), sorted(set(models))


def _git(repo, *args):
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def test_readme_outputs_are_git_ignored(tmp_path):
    repo = tmp_path / "clone"
    repo.mkdir()
    _git(repo, "init", "-q")
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    _git(repo, "add", ".gitignore")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "i")
    caches, models = _readme_outputs()
    ns = CacheNamespace("m", "m", "default", "v1")
    for name in caches:
        cache = EmbeddingCache(repo / name)
        cache.put(ns, ["a" * 64], np.ones((1, 3), dtype=np.float32))
        leases = cache.leases()
        claimed, _ = leases.claim(ns.fingerprint, ["b" * 64])
        assert claimed == [0] and (repo / (name + ".leases")).is_dir()
        # a lease file and a break guard left by processes killed with -9
        (repo / (name + ".leases") / "0.lease.break-x").write_bytes(b"x")
        (repo / (name + ".leases") / ".tmp-x").write_bytes(b"x")
        assert (repo / (name + ".journal")).exists()
        cache.compact()
        memo = memo_dir_for(repo / name)
        memo.mkdir()
        (memo / ("0" * 64 + ".skops")).write_bytes(b"x")
        (repo / (name + ".corrupt-20261202T010000")).write_bytes(b"x")
        # The file-identity memo beside the cache (F.identities and its lock).
        photo = tmp_path / "photo.bin"
        photo.write_bytes(b"not racy")
        time.sleep(2.1)  # files changed in the last 2 s are not memoised
        hash_paths([str(photo)], repo / name, n_threads=1, rehash=False, errors=())
        assert (repo / (name + ".identities")).exists()
        # The backbone converted for OpenVINO (the default runtime), kept
        # beside the cache: its IR and OpenVINO's compiled-model cache.
        converted = Path(openvino_dir(repo / name)) / "0123abcd"
        (converted / "compiled").mkdir(parents=True)
        (converted / "model.xml").write_bytes(b"x")
        (converted / "compiled" / "1.blob").write_bytes(b"x")
    for name in models:
        for rel in ("head.skops", "labels.txt", "manifest.json", "report/a.png"):
            (repo / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / name / rel).write_bytes(b"x")
    made = sorted(
        str(p.relative_to(repo)) for p in repo.rglob("*") if ".git" not in p.parts
    )
    assert any(p.endswith(".lock") for p in made), made
    assert _git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_main_command_writes_where_the_gitignore_expects():
    # --cache and --output are plain names in the clone, as .gitignore assumes
    caches, models = _readme_outputs()
    assert all("/" not in name for name in caches + models)
    ignore = (ROOT / ".gitignore").read_text().split()
    assert all(f"/{name}*/" in ignore or f"/{name}/" in ignore for name in models)
