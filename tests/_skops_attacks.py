"""Hand-built malicious ``head.skops`` files for the model-directory tests.

``plant`` adds to a real head an attribute whose schema node skops loads by
calling a callable named in the file (``ConstructorFromReduceNode``), with
arguments from the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

#: What embedclf 0.1.0 trusted in head.skops: every type under these prefixes.
OLD_TRUSTED_PREFIXES = ("embedclf.", "sklearn.", "numpy.", "scipy.", "builtins.")


def _json(value, ident):
    return {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
        "__id__": ident,
    }


def call(module, name, *args, ident=900_000):
    """A node that skops loads as ``module.name(*args)``."""
    return {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [_json(a, ident + 1 + i) for i, a in enumerate(args)],
            "__id__": ident,
        },
        "__id__": ident + 100,
    }


def attacks(marker: Path) -> dict:
    m = str(marker)
    write = f"__import__('pathlib').Path({m!r}).write_text('ran')"
    return {
        "eval": call("builtins", "eval", write),
        "exec": call("builtins", "exec", write),
        "open": call("builtins", "open", m, "w"),
        "numpy.savetxt": call("numpy", "savetxt", m, [1.0]),
        "eval-in-__import__": call(
            "builtins", "eval", f"__import__('os').system('touch {m}')"
        ),
    }


def plant(head_path: Path, node: dict) -> None:
    """Add ``node`` as attribute ``payload_`` of the head in ``head_path``."""
    with zipfile.ZipFile(head_path) as z:
        files = {name: z.read(name) for name in z.namelist()}
    schema = json.loads(files["schema.json"])
    attrs = schema["content"]  # the estimator's __dict__ (a DictNode)
    attrs["content"]["payload_"] = node
    attrs["key_types"]["content"].append(
        {
            "__class__": "str",
            "__module__": "builtins",
            "__loader__": "TypeNode",
            "__id__": 990_001,
        }  # fmt: skip
    )
    files["schema.json"] = json.dumps(schema).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    head_path.write_bytes(buf.getvalue())


def head_file(md: Path) -> Path:
    manifest = json.loads((md / "manifest.json").read_text())
    if "files" in manifest:
        return md / manifest["files"]["head"]["path"]
    return md / manifest.get("head_file", "head.skops")


def rehash(md: Path) -> None:
    """Write the planted head's digest into the manifest, as an attacker would."""
    manifest = json.loads((md / "manifest.json").read_text())
    if "files" in manifest:
        digest = hashlib.sha256(head_file(md).read_bytes()).hexdigest()
        manifest["files"]["head"]["sha256"] = digest
        (md / "manifest.json").write_text(json.dumps(manifest))
