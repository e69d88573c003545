"""``tidings devices`` and ``--unlink``, as a user runs them: real processes, a relay of the
test's own (the module relay of test_cli is at its registration limit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import Proc, Server, ok, one_line_error, register, run
from tidings.cli.devices_cmd import certificate_text, key_fingerprint, seen_text

pytestmark = [pytest.mark.proc, pytest.mark.slow]


def test_devices_lists_unlinks_and_the_unlinked_device_is_refused(
    tmp_path: Path, procs: list[Proc]
) -> None:
    server = Server(tmp_path, tmp_path / "data", name="devices")
    procs.append(server.proc)
    phone, laptop, carol = tmp_path / "phone", tmp_path / "laptop", tmp_path / "carol"
    register(tmp_path, server.url, "uma", phone, "--device-name", "phone-of-uma")
    (code,) = ok(tmp_path, "link-code", "--json", "--home", str(phone)).json_lines()
    register(tmp_path, server.url, "uma", laptop, "--link-code", code["code"],
             "--device-name", "laptop-of-uma")  # fmt: skip
    register(tmp_path, server.url, "carol", carol)
    ok(tmp_path, "send", "uma", "hello both", "--wait", "sent", "--home", str(carol))

    listed = ok(tmp_path, "devices", "--json", "--home", str(phone)).json_lines()
    assert [(d["device"], d["this"]) for d in listed] == [("uma.1", True), ("uma.2", False)]
    assert listed[0]["name"] == "phone-of-uma"
    # the laptop tells the phone its name the first time it connects (end to end)
    ok(tmp_path, "send", "carol", "from the laptop", "--wait", "sent", "--home", str(laptop))
    for _ in range(5):  # the phone fetches the laptop's DEVICE_INFO as it connects
        named = ok(tmp_path, "devices", "--json", "--home", str(phone)).json_lines()
        if named[1]["name"] is not None:
            break
    assert named[1]["name"] == "laptop-of-uma", named
    assert listed[0]["fingerprint"] is not None and len(listed[0]["fingerprint"]) == 24
    # the laptop shows its own key with the same fingerprint the phone shows... once they talk
    mine = ok(tmp_path, "devices", "--json", "--home", str(laptop)).json_lines()
    assert [d["this"] for d in mine] == [False, True]
    text = ok(tmp_path, "devices", "--home", str(phone)).out
    assert "uma.1" in text and "this device" in text and "uma.2" in text
    theirs = ok(tmp_path, "devices", "uma", "--json", "--home", str(carol)).json_lines()
    assert [d["device"] for d in theirs] == ["uma.1", "uma.2"]
    assert all(d["fingerprint"] is not None for d in theirs)  # carol has sessions with both
    # the phone certified the laptop when its DEVICE_INFO (with the link proof) came, and
    # publishes the certificate at its next connection at the latest
    for _ in range(5):
        ok(tmp_path, "devices", "--home", str(phone))
        theirs = ok(tmp_path, "devices", "uma", "--json", "--home", str(carol)).json_lines()
        if theirs[1]["certificate"] == "certified":
            break
    assert [(d["certificate"], d["certified_by"]) for d in theirs] == [
        ("uncertified", None),
        ("certified", 1),
    ]
    assert all(d["online"] is False and d["last_seen"] % 3600 == 0 for d in theirs)
    text = ok(tmp_path, "devices", "uma", "--home", str(carol)).out
    assert "certified by device 1" in text and "not certified" in text
    assert "last seen within the hour" in text
    safety = ok(tmp_path, "safety-number", "uma", "--home", str(carol)).out
    assert "uma.1: not certified" in safety and "uma.2: certified by device 1" in safety

    unlinked = ok(tmp_path, "devices", "--unlink", "2", "--json", "--home", str(phone))
    lines = unlinked.json_lines()
    assert lines[0] == {"event": "unlinked", "device": "uma.2"}
    assert [d["device"] for d in lines[1:]] == ["uma.1"]
    refused = run(tmp_path, "send", "carol", "from the stolen laptop", "--home", str(laptop))
    assert "refused" in one_line_error(refused) or refused.code != 0
    again = run(tmp_path, "devices", "--unlink", "1", "--home", str(phone))
    assert "last device" in one_line_error(again) or "only device" in again.err
    wrong = run(tmp_path, "devices", "carol", "--unlink", "1", "--home", str(phone))
    assert wrong.code == 2 and "your own account" in wrong.err
    ok(tmp_path, "send", "uma", "only the phone now", "--wait", "sent", "--home", str(carol))


def test_key_fingerprint_is_short_and_ignores_the_type_byte() -> None:
    key = bytes(range(32))
    assert key_fingerprint(key) == key_fingerprint(b"\x05" + key)
    assert len(key_fingerprint(key).split()) == 5
    assert key_fingerprint(key) != key_fingerprint(bytes(32))


def test_last_seen_and_certificate_lines() -> None:
    now = 1_700_000_000.0
    base = {"online": False, "last_seen": now - now % 3600, "reason": "", "certified_by": None}
    assert seen_text({**base, "online": True}, now) == "connected now"
    assert seen_text(base, now + 3 * 3600) == "last seen 3 h ago"
    assert seen_text(base, now + 5 * 86400) == "last seen 5 days ago"
    assert seen_text({**base, "last_seen": None}, now) == "last seen: not recorded"
    assert certificate_text({**base, "certificate": "certified", "certified_by": 1}) == (
        "certified by device 1"
    )
    assert certificate_text({**base, "certificate": "uncertified"}) == "not certified"
    refused = {**base, "certificate": "invalid", "reason": "the signature does not verify"}
    assert certificate_text(refused) == "CERTIFICATE REFUSED: the signature does not verify"
