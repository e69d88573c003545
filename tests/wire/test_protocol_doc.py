"""docs/protocol.md agrees with the code: frame numbers and fields, error codes, example bytes."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from tidings.wire import ErrorCode, FrameType

from .samples import FIELD_KINDS, GOLDEN, SAMPLES

DOC = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")


def section(start: str, end: str) -> str:
    """The text of DOC from the heading ``start`` to the heading ``end``."""
    return DOC[DOC.index(start) : DOC.index(end)]


def test_the_frame_table_lists_every_type_with_its_fields_in_order() -> None:
    frames = section("## 6. Frames", "### 6.1")
    rows = re.findall(r"^\| +(\d+) \| ([A-Z_]+) \| [^|]+ \| ([a-z_, ]+) \|$", frames, re.M)
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
    "uint 0 or 1": "deliver_kind",
    "array of 1–32 targets": "targets",
    "array of 0–32 uint": "device_ids",
    "array of 0–32 device refs": "refs",
    "identity_key": "identity_key",
    "signed prekey": "signed_prekey",
    "array of 0–100 one-time prekeys": "one_time_prekeys",
    "array of 0–100 KEM prekeys": "kem_prekeys",
    "one-time prekey or nil": "one_time_prekey_or_nil",
    "KEM prekey": "kem_prekey",
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
