"""Tests for tidings.server.logs: output captured in a StringIO."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tidings.errors import ConfigError
from tidings.server.logs import LOGGER_NAME, ConnLogger, setup_logging


@pytest.fixture(autouse=True)
def restore_logger() -> Iterator[None]:
    """Leave the ``tidings`` logger as we found it, so other tests' caplog still works."""
    logger = logging.getLogger(LOGGER_NAME)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in logger.handlers:
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:], logger.level, logger.propagate = saved


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_one_object_per_line() -> None:
    out = io.StringIO()
    setup_logging("info", "json", out)
    log = logging.getLogger("tidings.server.session")
    log.info("= OPEN", extra={"conn": 7, "device": "d1", "event": "conn.open"})
    log.warning("! bad frame\nsecond line")
    first, second = json_lines(out)
    assert list(first) == ["ts", "level", "logger", "msg", "conn", "device", "event"]
    assert first["level"] == "info"
    assert first["logger"] == "tidings.server.session"
    assert first["msg"] == "= OPEN"
    assert (first["conn"], first["device"], first["event"]) == (7, "d1", "conn.open")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert second["msg"] == "! bad frame\nsecond line"
    assert len(out.getvalue().splitlines()) == 2


def test_json_level_filters() -> None:
    out = io.StringIO()
    setup_logging("WARNING", "json", out)
    log = logging.getLogger("tidings.x")
    log.debug("< PING")
    log.info("= OPEN")
    log.error("! store commit failed")
    assert [e["level"] for e in json_lines(out)] == ["error"]


def test_json_non_serialisable_extras_and_exceptions() -> None:
    out = io.StringIO()
    setup_logging("debug", "json", out)
    log = logging.getLogger("tidings.x")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("! failed", extra={"key_id": b"\x01\xff", "obj": object()})
    (entry,) = json_lines(out)
    assert entry["key_id"] == "01ff"
    assert entry["obj"].startswith("<object object")
    assert "RuntimeError: boom" in entry["exc"]
    assert entry["level"] == "error"


def test_text_format() -> None:
    out = io.StringIO()
    setup_logging("debug", "text", out)
    logging.getLogger("tidings.s").debug(
        "> DELIVER", extra={"seq": 42, "conn": "c9", "device": "my laptop"}
    )
    line = out.getvalue().rstrip("\n")
    assert re.fullmatch(
        r"\S+Z DEBUG   tidings\.s \[c9\] > DELIVER seq=42 device=\"my laptop\"", line
    ), line


def test_setup_twice_replaces_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", "json", first)
    logger = setup_logging("info", "text", second)
    logger.info("hello")
    assert first.getvalue() == ""
    assert "hello" in second.getvalue()
    assert logger.propagate is False


def test_foreign_handlers_are_kept() -> None:
    logger = logging.getLogger(LOGGER_NAME)
    foreign = logging.NullHandler()
    logger.addHandler(foreign)
    setup_logging("info", "json", io.StringIO())
    setup_logging("info", "json", io.StringIO())
    assert foreign in logger.handlers
    assert len(logger.handlers) == 2


def test_not_below_tidings_is_not_captured() -> None:
    out = io.StringIO()
    setup_logging("debug", "json", out)
    logging.getLogger("other").error("not ours")
    assert out.getvalue() == ""


@pytest.mark.parametrize(("level", "fmt"), [("verbose", "json"), ("info", "xml")])
def test_invalid_arguments(level: str, fmt: str) -> None:
    with pytest.raises(ConfigError):
        setup_logging(level, fmt, io.StringIO())


def test_conn_logger_stamps_conn() -> None:
    out = io.StringIO()
    setup_logging("debug", "json", out)
    log = ConnLogger(logging.getLogger("tidings.server.session"), "c1")
    log.debug("< SEND", extra={"targets": 3})
    log.info("= CLOSED")
    first, second = json_lines(out)
    assert (first["conn"], first["targets"]) == ("c1", 3)
    assert second["conn"] == "c1"
    assert log.conn == "c1"


def test_conn_logger_bind_and_precedence() -> None:
    out = io.StringIO()
    setup_logging("debug", "json", out)
    log = ConnLogger(logging.getLogger("tidings.s"), 5, device="d1").bind(account="alice")
    log.info("= OPEN", extra={"device": "d2", "conn": 99})
    (entry,) = json_lines(out)
    assert entry["conn"] == 5  # the connection id cannot be overridden per call
    assert entry["device"] == "d2"  # other per-call fields win over bound ones
    assert entry["account"] == "alice"


def test_conn_logger_respects_level() -> None:
    out = io.StringIO()
    setup_logging("info", "text", out)
    ConnLogger(logging.getLogger("tidings.s"), 1).debug("< PING")
    assert out.getvalue() == ""


def test_every_log_line_names_the_node() -> None:
    out = io.StringIO()
    setup_logging("info", "json", out, node="relay-2")
    logging.getLogger("tidings.server").info("= hello", extra={"event": "x"})
    [line] = json_lines(out)
    assert line["node"] == "relay-2" and line["msg"] == "= hello"
    out = io.StringIO()
    setup_logging("info", "text", out, node="relay-2")
    logging.getLogger("tidings.server").info("= again")
    assert out.getvalue().rstrip().endswith("= again node=relay-2")
