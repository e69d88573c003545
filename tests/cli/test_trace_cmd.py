"""``tidings trace MESSAGE``: which forms of a message id it takes, and what it says when one
matches nothing or several messages (in process, on a store built here; test_cli.py traces a
real message by the form ``send`` printed)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tidings.cli.exits import Exit
from tidings.cli.main import main
from tidings.client.connect import DB_NAME
from tidings.client.store import ClientStore, Identity

A1 = bytes.fromhex("a990c53083ad4e1f9b2c3d4e5f607182")
A2 = bytes.fromhex("a990f1d2c3b4a5968778695a4b3c2d1e")
B = bytes.fromhex("5e0c1a2b3c4d5e6f708192a3b4c5d6e7")
CLOSE = [bytes.fromhex(f"77770{n}" + "0" * 26) for n in range(8)]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # uvloop's policy would stay for the rest of the test session
    monkeypatch.setattr(sys.modules["tidings.cli.main"], "_use_uvloop", lambda: None)
    now = time.time()
    with ClientStore(tmp_path / DB_NAME) as store:
        store.save_identity(Identity(bytes(32), "alice", 1, "laptop", "ws://127.0.0.1:1/v1"))
        for mid in (A1, A2, B, *CLOSE):
            store.compose(mid, "bob", "alice:bob", b"hi", now)
    return tmp_path


def trace(home: Path, message: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(["trace", message, "--home", str(home)])
    except SystemExit as exc:  # argparse's usage error
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "form",
    [
        A1.hex(),
        A1.hex()[:12] + "…",  # as send's and listen's status lines print it
        A1.hex()[:12] + "...",
        A1.hex()[:12].upper() + "…",
        "a990c",
        f" {A1.hex()[:6]} ",
    ],
)
def test_a_unique_prefix_in_any_printed_form_finds_the_message(
    home: Path, form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = trace(home, form, capsys)
    assert (code, err) == (Exit.OK, "")
    assert out.startswith(f"message {A1.hex()}  status")


def test_four_digits_are_enough(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = trace(home, "5e0c…", capsys)
    assert code == Exit.OK and out.startswith(f"message {B.hex()}")


def test_an_ambiguous_prefix_names_some_candidates(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = trace(home, "a990…", capsys)
    assert (code, out) == (Exit.ERROR, "")
    assert err == (
        f"tidings: message id a990 is ambiguous in {home}: it matches {A1.hex()}, {A2.hex()}; "
        "give more digits\n"
    )
    code, _, err = trace(home, "7777", capsys)
    assert code == Exit.ERROR
    shown = ", ".join(m.hex() for m in CLOSE[:5])
    assert f"it matches {shown}, …; give more digits" in err


def test_a_prefix_of_nothing_says_so(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = trace(home, "ffff…", capsys)
    assert (code, out, err) == (Exit.ERROR, "", f"tidings: no message ffff in {home}\n")


@pytest.mark.parametrize("form", ["a99", "a99…", "not-hex!", "a990c53083ad…x", "", "…", "0" * 33])
def test_a_malformed_id_is_a_usage_error(
    home: Path, form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = trace(home, form, capsys)
    assert (code, out) == (Exit.USAGE, "")
    assert "is not a message id: give it, or at least its first 4 hex digits" in err


def test_the_store_lookup_by_prefix(home: Path) -> None:
    with ClientStore(home / DB_NAME) as store:
        assert store.message_ids_starting("a990") == [A1, A2]
        assert store.message_ids_starting("a990f") == [A2]
        assert store.message_ids_starting(A1.hex()) == [A1]
        assert store.message_ids_starting("7", limit=3) == CLOSE[:3]
        assert store.message_ids_starting("0") == []
        with pytest.raises(ValueError):
            store.message_ids_starting("A990")
        with pytest.raises(ValueError):
            store.message_ids_starting("")


def test_it_says_whether_a_message_went_sealed_or_fell_back(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ClientStore(home / DB_NAME) as store:
        store.put_sealed_tag(A1, "bob", b"T" * 16, time.time(), "to bob: 1 device(s), tag 54545454")
        store.put_sealed_tag(A2, "bob", b"U" * 16, time.time(), "to bob: 1 device(s), tag 55555555")
        store.mark_unsealed(A2, "ACCESS_DENIED: wrong key", time.time())
    _, out, _ = trace(home, A1.hex(), capsys)
    assert "  sealed: yes — not stored yet\n" in out
    assert "sealed  (to bob: 1 device(s), tag 54545454)" in out
    _, out, _ = trace(home, A2.hex(), capsys)
    assert "  sealed: no — fell back to a normal send (ACCESS_DENIED: wrong key)\n" in out
    _, out, _ = trace(home, B.hex(), capsys)
    assert "sealed" not in out
