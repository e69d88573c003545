"""Regenerate tests/vectors/signal/libsignal-senderkey.json (not run by the tests).

Needs Node.js and libsignal's Node package in a directory of your choice:

    mkdir -p /tmp/lsig && (cd /tmp/lsig && npm install @signalapp/libsignal-client)
    NODE_PATH=/tmp/lsig/node_modules python tests/vectors/senderkey/regenerate.py

It builds our distribution message and group messages from fixed seeds (the same that
tests/e2e/test_senderkey.py uses, so the bytes are golden), has libsignal decrypt them, and
records libsignal's own chains and messages for our decryption tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "signal" / "libsignal-senderkey.json"
sys.path.insert(0, str(HERE.parents[2]))  # the repository, for tests.e2e

from tests.e2e.senderkey_fixture import ours_vectors  # noqa: E402


def main() -> int:
    ours = ours_vectors()
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "ours.json", Path(tmp) / "out.json"
        inp.write_text(json.dumps(ours))
        # generate.mjs imports by package name: link NODE_PATH's package next to it
        node_path = os.environ.get("NODE_PATH", "")
        if node_path:
            (Path(tmp) / "node_modules").symlink_to(node_path)
        script = Path(tmp) / "generate.mjs"
        script.write_text((HERE / "generate.mjs").read_text())
        subprocess.run(["node", str(script), str(inp), str(out)], check=True)
        OUT.write_text(out.read_text())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
