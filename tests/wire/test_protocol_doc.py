"""docs/protocol.md agrees with the code: its numbering, frame numbers and fields, error codes,
limits, and every example it prints (frame bytes, handshake transcripts, payloads)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from tests.noise._pipes_transcript import markdown
from tidings.wire import ErrorCode, FrameType, limits
from tidings.wire.codec import FRAME_LIMITS

from .samples import FIELD_KINDS, GOLDEN, SAMPLES

DOC = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
VECTORS = Path(__file__).parents[1] / "vectors"


def section(start: str, end: str) -> str:
    """The text of DOC from the heading ``start`` to the heading ``end``."""
    return DOC[DOC.index(start) : DOC.index(end)]


def test_the_frame_table_lists_every_type_with_its_fields_in_order() -> None:
    frames = section("## 6. Frames", "### 6.1")
    rows = re.findall(r"^\| +(\d+) \| ([A-Z_]+) \| [^|]+ \| ([a-z0-9_, ]+) \|$", frames, re.M)
    table = {int(number): (name, fields.split(", ")) for number, name, fields in rows}
    expected = {
        int(t): (t.name, [f.name for f in dataclasses.fields(SAMPLES[t])])  # type: ignore[arg-type]
        for t in FrameType
    }
    assert table == expected


def test_the_error_table_lists_every_code() -> None:
    errors = section("## 9. Error codes", "## 10. Limits")
    rows = re.findall(r"^\| +(\d+) \| ([A-Z_]+) \| [^|]+ \| [^|]+ \|$", errors, re.M)
    codes = {int(code): name for code, name in rows}
    assert codes == {int(c): c.name for c in ErrorCode}


def test_the_worked_example_shows_the_golden_bytes() -> None:
    flat = DOC.replace("`", "")
    for name, _frame, hex_body in GOLDEN:
        if name in ("SEND", "DELIVER", "ACK", "DELIVER expired notice"):
            assert hex_body in flat, name


#: How the field tables of §6 name each kind of field of samples.FIELD_KINDS.
DOC_KINDS = {
    "uint": "uint",
    "account": "account",
    "time": "time",
    "message_id": "message_id",
    "payload": "payload",
    "link_code": "link_code",
    "link_code or nil": "link_code_or_nil",
    "device_name": "device_name",
    "reason": "reason",
    "bool": "bool",
    "uint 0, 1, 2 or 3": "deliver_kind",
    "account, or empty for kind 3": "account",
    "array of 1–32 targets": "targets",
    "array of 0–32 uint": "device_ids",
    "array of 0–32 device refs": "refs",
    "identity_key": "identity_key",
    "signed prekey": "signed_prekey",
    "array of 0–100 one-time prekeys": "one_time_prekeys",
    "array of 0–100 KEM prekeys": "kem_prekeys",
    "one-time prekey or nil": "one_time_prekey_or_nil",
    "KEM prekey": "kem_prekey",
    "push_endpoint": "push_endpoint",
    "push_endpoint or empty": "push_endpoint_or_empty",
    "push_key": "push_key",
    "push_auth": "push_auth",
    "uint 0, 1 or 2 (push state)": "push_state",
    "device_id": "device_id",
    "shared": "shared",
    "array of 1–1,000 recipient accounts": "recipients",
    "array of 0–1,000 account refusals": "refusals",
    "device certificate or nil": "certify_or_nil",
    "array of 0–32 device details": "device_details",
    "tag": "tag",
    "access_key": "access_key",
    "array of 1–32 sealed devices": "sealed_devices",
    "array of 1–256 tags": "tags",
    "sender certificate": "sender_certificate",
    "array of 0–256 tag states": "tag_states",
    "array of 1–1,000 sealed recipient accounts": "sealed_recipients",
}


def test_each_frame_section_has_a_field_table_matching_the_code() -> None:
    frames = section("### 6.1", "## 7. Session")
    seen = set()
    for heading, body in re.findall(r"^### 6\.\d+ (.+?)$(.*?)(?=^### |\Z)", frames, re.M | re.S):
        rows = re.findall(r"^\| (\d+) \| (\w+) \| ([^|]+?) \|", body, re.M)
        names = [name for _, name, _ in rows]
        kinds = tuple(DOC_KINDS[kind] for _, _, kind in rows)
        for number in re.findall(r"\((\d+)\)", heading):
            frame_type = FrameType(int(number))
            fields = [f.name for f in dataclasses.fields(SAMPLES[frame_type])]  # type: ignore[arg-type]
            assert (names, kinds) == (fields, FIELD_KINDS[frame_type]), heading
            seen.add(frame_type)
    assert seen == set(FrameType)


# ---------------------------------------------------------------- structure


def test_sections_are_numbered_once_and_in_order() -> None:
    headings = re.findall(r"^(##|###) (\d+)\.(\d*) ", DOC, re.M)
    top = [int(n) for level, n, _ in headings if level == "##"]
    assert top == list(range(1, len(top) + 1))
    for number in top:
        subs = [int(m) for level, n, m in headings if level == "###" and int(n) == number]
        assert subs == list(range(1, len(subs) + 1)), f"§{number}"
    for level, _, sub in headings:  # "## 3." and "### 3.1", never "## 3.1" or "### 3."
        assert (level == "##") == (sub == "")


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def test_the_contents_link_every_section() -> None:
    contents = DOC[DOC.index("Contents:") : DOC.index("## 1.")]
    for number, title in re.findall(r"^## (\d+)\. (.+)$", DOC, re.M):
        assert f"[{number} {title}](#{_anchor(number + '. ' + title)})" in contents, title


def test_the_limits_table_gives_every_wire_limit_its_value() -> None:
    table = section("## 10. Limits", "## 11.")
    rows = dict(re.findall(r"^\| `([A-Z_]+)`[^|]* \| ([^|]+) \|", table, re.M))
    names = [n for n in dir(limits) if n.isupper() and type(getattr(limits, n)) is int]
    expected = {n: f"{getattr(limits, n):,}" for n in names if n != "PROTOCOL_VERSION"}
    expected["MAX_KEY_ID"] = "2^32 − 1"
    assert set(rows) >= set(expected)
    for name, value in expected.items():
        assert rows[name].startswith(value), name
    assert rows["MAX_PREKEYS_PER_UPLOAD"].startswith(f"{limits.MAX_PREKEYS_PER_UPLOAD} one-time")
    devices = re.search(r"^\| DEVICES \| ([\d,]+) ", table, re.M)
    assert devices is not None
    assert devices.group(1) == f"{FRAME_LIMITS[FrameType.DEVICES]:,}"


def test_every_error_code_is_named_in_the_text_it_is_used_by() -> None:
    # Each code is in the table (above); the names used in the prose exist.
    used = set(re.findall(r"\b(?:ERROR|REFUSED|REQUEST_FAILED) ([A-Z][A-Z_]{3,})\b", DOC))
    assert len(used) > 10
    assert used <= {c.name for c in ErrorCode} | {"ERROR", "REFUSED"}


# ---------------------------------------------------------------- known answers in the text

PIPES = json.loads((VECTORS / "noise" / "tidings-pipes.json").read_text(encoding="utf-8"))
PAYLOADS = json.loads((VECTORS / "signal" / "tidings-payloads.json").read_text(encoding="utf-8"))
PQ_SESSION = json.loads(
    (VECTORS / "signal" / "tidings-pqxdh-session.json").read_text(encoding="utf-8")
)


def test_the_handshake_transcripts_are_printed_from_the_vector() -> None:
    vector_section = section("### 3.6", "## 4. Framing")
    assert markdown(PIPES) in vector_section


def test_the_fingerprint_example_is_the_vectors() -> None:
    example = section("### 3.5", "### 3.6")
    assert PIPES["public_keys"]["server_static"] in example
    assert PIPES["server_fingerprint_digest"] in example
    assert f"fingerprint {PIPES['server_fingerprint']}" in example


def _flat(text: str) -> str:
    """``text`` without whitespace or backticks: hex wrapped over lines reads as one string."""
    return re.sub(r"[\s`]", "", text)


def test_the_payload_examples_are_the_vectors() -> None:
    examples = _flat(DOC[DOC.index("### 12.12") :])
    bob, alice = PAYLOADS["identities"]["bob"], PAYLOADS["identities"]["alice"]
    spk = PAYLOADS["prekeys"]["signed_prekey"]
    for value in (
        *(bob[k] for k in ("seed", "ed25519_public", "x25519_private", "identity_key")),
        alice["seed"],
        alice["identity_key"],
        alice["identity_key_33"],
        PAYLOADS["identities"]["alice_device_2"]["identity_key"],
        spk["public"],
        spk["private"],
        spk["signed_message"],
        spk["signature"],
        *(PAYLOADS["contents"][k]["hex"] for k in ("message", "receipt", "resend")),
        PAYLOADS["contents"]["retry_request"]["hex"],
        PAYLOADS["contents"]["retry_request_payload"]["hex"],
    ):
        assert value in examples, value
    for case in ("one_device_each", "alice_with_two_devices"):
        assert PAYLOADS["safety_numbers"][case]["number"] in examples


def _hex_column(text: str) -> str:
    """The hex bytes of a byte-by-byte breakdown, labels (after two spaces) and "…" dropped."""
    out = []
    for line in text.splitlines():
        part = line.strip().split("  ")[0]
        if re.fullmatch(r"[0-9a-f ]+…?", part):
            out.append(part.replace(" ", "").rstrip("…"))
    return "".join(out)


def test_the_message_format_examples_are_the_vectors() -> None:
    flat = _hex_column(section("### 12.6", "### 12.7"))
    assert PQ_SESSION["expected"]["replies"][0] in flat
    head = flat[flat.index("4408") :]
    shown = head[: head.index("0a654ae68620a4e9c5") + 18]
    assert len(shown) // 2 == 176  # every field shown but the last 1,560 ciphertext bytes
    assert PQ_SESSION["expected"]["prekey_message"].startswith(shown)
