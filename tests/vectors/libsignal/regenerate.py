"""Regenerate the vectors libsignal makes (not run by the tests):

- tests/vectors/signal/libsignal-senderkey.json (senderkey.mjs)
- tests/vectors/signal/libsignal-sealed.json (sealed.mjs)

Needs Node.js and libsignal's Node package in a directory of your choice:

    mkdir -p /tmp/lsig && (cd /tmp/lsig && npm install @signalapp/libsignal-client)
    NODE_PATH=/tmp/lsig/node_modules python tests/vectors/libsignal/regenerate.py

Each script first has libsignal check *our* bytes, made from fixed seeds by
tests/e2e/libsignal_fixture.py (the same bytes the tests pin as golden), and fails if libsignal
disagrees; then it records libsignal's own output for our decryption tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIGNAL = HERE.parent / "signal"
sys.path.insert(0, str(HERE.parents[2]))  # the repository, for tests.e2e

from tests.e2e.libsignal_fixture import ours_sealed, ours_senderkey  # noqa: E402

JOBS = (
    ("senderkey.mjs", ours_senderkey, "libsignal-senderkey.json"),
    ("sealed.mjs", ours_sealed, "libsignal-sealed.json"),
)


def main() -> int:
    node_path = os.environ.get("NODE_PATH", "")
    for script, make, out_name in JOBS:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if node_path:  # the scripts import by package name: link it next to them
                (work / "node_modules").symlink_to(node_path)
            (work / script).write_text((HERE / script).read_text())
            (work / "ours.json").write_text(json.dumps(make()))
            subprocess.run(["node", script, "ours.json", "out.json"], cwd=work, check=True)
            (SIGNAL / out_name).write_text((work / "out.json").read_text())
        print(f"wrote {SIGNAL / out_name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
