"""The fault lab's record: the run directory, its JSON-lines formats and a writer.

A run directory (``RUN``) holds::

    RUN/record.jsonl                        the controller's record (RecordLine)
    RUN/events/<account>.<device>.jsonl     each device process's own log (DeviceEvent)

Each line is one JSON object with ``"t"`` (lab clock, seconds) and ``"ev"`` (its type):

=================== ===============================================================================
``run``             ``scenario`` str, ``seed`` int, ``quick`` bool
``device``          ``account`` str, ``device`` int, ``home`` str (the home holding ``client.db``)
``fault``           ``kind`` str, ``target`` str, ``start`` float, ``end`` float|null, ``detail`` {}
``settled``         every endpoint had its chance: from here on, missing means lost
``server``          ``data_dir`` str, ``log`` str
``composed``        ``mid`` hex, ``to`` account, ``conv`` str, ``counter`` int, ``body`` str
``status``          ``mid`` hex, ``device`` "acct.N"|null, ``overall`` str, ``status``:
                    sent|delivered|read|expired|failed
``received``        ``mid`` hex, ``from`` "acct.N", ``conv`` str, ``counter`` int, ``late`` bool
``read``            ``mids`` [hex, …]
``refused``         ``mid`` hex, ``code`` str (QUEUE_FULL…), ``final`` bool: the relay refused it
``send_failed``     ``to`` account, ``body`` str, ``state`` str: ``send()`` raised StoreUnavailable
                    (the device's store could not queue it: the user is told "not sent")
``storage_failed``  ``state`` str, ``message`` str: the device's store cannot write; it stops
=================== ===============================================================================

The first five are the controller's (:data:`RecordLine`), the others a device's
(:data:`DeviceEvent`); each is a class below (``from`` is the attribute ``sender``).
Relative paths (``home``, ``data_dir``, ``log``) are relative to ``RUN``.

Invariants:

* :class:`JsonlWriter` writes each line with ONE ``write()`` call, newline included, so a
  process killed by SIGKILL leaves at most one partial line, at the end of the file.
* The reader (:mod:`.record_read`) never raises for what a file contains (see there).
* The device-events path is ``RUN/events/<acct.N>.jsonl`` (:func:`events_path`, which the
  workload's device processes use too).
* Every line type is a frozen dataclass that validates on construction.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

from ..client.connect import DB_NAME

__all__ = [
    "EVENTS_DIR",
    "RECORD_FILE",
    "STATUS_NAMES",
    "STORE_FILE",
    "Composed",
    "DeviceEvent",
    "DeviceStarted",
    "Fault",
    "JsonlWriter",
    "ReadMarked",
    "Received",
    "RecordError",
    "RecordLine",
    "RunStarted",
    "SendFailed",
    "SendRefused",
    "ServerStarted",
    "Settled",
    "StatusChanged",
    "StorageFailedLine",
    "decode_event",
    "decode_record_line",
    "device_label",
    "encode",
    "events_path",
]

RECORD_FILE = "record.jsonl"
EVENTS_DIR = "events"  #: each device's events file, ``EVENTS_DIR/acct.N.jsonl``
STORE_FILE = DB_NAME  #: the client store's file in a device home (``client.db``)

#: The ``status`` values of a ``status`` line.
STATUS_NAMES = frozenset({"sent", "delivered", "read", "expired", "failed"})


class RecordError(ValueError):
    """A line that is not a valid record line (the reader turns it into an error entry)."""


def device_label(account: str, device: int) -> str:
    """The label of a device, ``"acct.N"`` (as in :class:`tidings.store.base.DeviceRef`)."""
    return f"{account}.{device}"


def events_path(run_dir: Path, label: str) -> Path:
    """The events file of the device ``label`` in ``run_dir``: ``RUN/events/acct.N.jsonl``."""
    return run_dir / EVENTS_DIR / f"{label}.jsonl"


# Field kinds: how a JSON value is checked. Each line class lists (json key, attribute, kind).
_CHECKS: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "float": lambda v: _is_num(v),
    "float?": lambda v: v is None or _is_num(v),
    "str?": lambda v: v is None or isinstance(v, str),
    "hex": lambda v: _is_hex(v),
    "hexes": lambda v: isinstance(v, list | tuple) and all(_is_hex(x) for x in v),
    "object": lambda v: isinstance(v, Mapping),
}


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_hex(v: Any) -> bool:
    if not isinstance(v, str) or not v or len(v) % 2:
        return False
    try:
        bytes.fromhex(v)
    except ValueError:
        return False
    return True


class _Line:
    """Base of every line type: validation and the field table."""

    __slots__ = ()
    EV: ClassVar[str]
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]]
    t: float  # declared again, as a field, by each subclass

    def __post_init__(self) -> None:
        if not _is_num(self.t):
            raise RecordError(f"{self.EV}: t must be a finite number")
        for key, attr, kind in self.FIELDS:
            if not _CHECKS[kind](getattr(self, attr)):
                raise RecordError(f"{self.EV}: {key} must be {kind}")


@dataclass(frozen=True, slots=True)
class RunStarted(_Line):
    """``run``: the scenario and its seed."""

    EV: ClassVar[str] = "run"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("scenario", "scenario", "str"),
        ("seed", "seed", "int"),
        ("quick", "quick", "bool"),
    )
    t: float
    scenario: str
    seed: int
    quick: bool


@dataclass(frozen=True, slots=True)
class DeviceStarted(_Line):
    """``device``: a lab device and its client home (which holds ``client.db``)."""

    EV: ClassVar[str] = "device"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("account", "account", "str"),
        ("device", "device", "int"),
        ("home", "home", "str"),
    )
    t: float
    account: str
    device: int
    home: str

    @property
    def label(self) -> str:
        """``"acct.N"``."""
        return device_label(self.account, self.device)


@dataclass(frozen=True, slots=True)
class Fault(_Line):
    """``fault``: a fault window ``[start, end]`` (lab clock); ``end`` None for an instant."""

    EV: ClassVar[str] = "fault"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("kind", "kind", "str"),
        ("target", "target", "str"),
        ("start", "start", "float"),
        ("end", "end", "float?"),
        ("detail", "detail", "object"),
    )
    t: float
    kind: str
    target: str
    start: float
    end: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def instant(self) -> bool:
        """Whether the fault is a point in time (a kill -9, a clock jump) rather than a window."""
        return self.end is None or self.end <= self.start


@dataclass(frozen=True, slots=True)
class Settled(_Line):
    """``settled``: every endpoint had its chance; from here on, missing means lost."""

    EV: ClassVar[str] = "settled"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    t: float


@dataclass(frozen=True, slots=True)
class ServerStarted(_Line):
    """``server``: the relay's data directory and log file (scanned for plaintext)."""

    EV: ClassVar[str] = "server"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("data_dir", "data_dir", "str"),
        ("log", "log", "str"),
    )
    t: float
    data_dir: str
    log: str


@dataclass(frozen=True, slots=True)
class Composed(_Line):
    """``composed``: ``send()`` returned, so the message is durable in the outbox (G2)."""

    EV: ClassVar[str] = "composed"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("mid", "mid", "hex"),
        ("to", "to", "str"),
        ("conv", "conv", "str"),
        ("counter", "counter", "int"),
        ("body", "body", "str"),
    )
    t: float
    mid: str
    to: str
    conv: str
    counter: int
    body: str


@dataclass(frozen=True, slots=True)
class StatusChanged(_Line):
    """``status``: a status change the device's client reported for one of its messages."""

    EV: ClassVar[str] = "status"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("mid", "mid", "hex"),
        ("device", "device", "str?"),
        ("status", "status", "str"),
        ("overall", "overall", "str"),
    )
    t: float
    mid: str
    device: str | None
    status: str
    overall: str

    def __post_init__(self) -> None:
        _Line.__post_init__(self)
        if self.status not in STATUS_NAMES:
            raise RecordError(f"status: unknown status {self.status!r}")


@dataclass(frozen=True, slots=True)
class Received(_Line):
    """``received``: the device's client surfaced an incoming message (``late``: after a gap
    was skipped)."""

    EV: ClassVar[str] = "received"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("mid", "mid", "hex"),
        ("from", "sender", "str"),
        ("conv", "conv", "str"),
        ("counter", "counter", "int"),
        ("late", "late", "bool"),
    )
    t: float
    mid: str
    sender: str
    conv: str
    counter: int
    late: bool = False


@dataclass(frozen=True, slots=True)
class ReadMarked(_Line):
    """``read``: the device displayed these received messages to its user."""

    EV: ClassVar[str] = "read"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (("mids", "mids", "hexes"),)
    t: float
    mids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SendRefused(_Line):
    """``refused``: the relay refused a send (``final``: for good; else it is retried)."""

    EV: ClassVar[str] = "refused"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("mid", "mid", "hex"),
        ("code", "code", "str"),
        ("final", "final", "bool"),
    )
    t: float
    mid: str
    code: str
    final: bool = False


@dataclass(frozen=True, slots=True)
class SendFailed(_Line):
    """``send_failed``: ``send()`` raised StoreUnavailable: the message was not queued, and the
    device said so (the plan item is composed again after a restart, as a user re-sends)."""

    EV: ClassVar[str] = "send_failed"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("to", "to", "str"),
        ("body", "body", "str"),
        ("state", "state", "str"),
    )
    t: float
    to: str
    body: str
    state: str


@dataclass(frozen=True, slots=True)
class StorageFailedLine(_Line):
    """``storage_failed``: the device's store could not write (disk full): it stopped."""

    EV: ClassVar[str] = "storage_failed"
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("state", "state", "str"),
        ("message", "message", "str"),
    )
    t: float
    state: str
    message: str


RecordLine = RunStarted | DeviceStarted | Fault | Settled | ServerStarted
DeviceEvent = (
    Composed | StatusChanged | Received | ReadMarked | SendRefused | SendFailed | StorageFailedLine
)

_RECORD_TYPES: dict[str, type[_Line]] = {
    c.EV: c for c in (RunStarted, DeviceStarted, Fault, Settled, ServerStarted)
}
_EVENT_TYPES: dict[str, type[_Line]] = {
    c.EV: c
    for c in (
        Composed,
        StatusChanged,
        Received,
        ReadMarked,
        SendRefused,
        SendFailed,
        StorageFailedLine,
    )
}


def encode(line: RecordLine | DeviceEvent) -> str:
    """One line of JSON (without its newline) for ``line``."""
    obj: dict[str, Any] = {"t": line.t, "ev": line.EV}
    for key, attr, kind in line.FIELDS:
        value = getattr(line, attr)
        obj[key] = list(value) if kind == "hexes" else dict(value) if kind == "object" else value
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _decode(obj: Any, types: Mapping[str, type[_Line]]) -> _Line:
    if not isinstance(obj, dict):
        raise RecordError("not a JSON object")
    cls = types.get(obj.get("ev"))  # type: ignore[arg-type]
    if cls is None:
        raise RecordError(f"unknown ev {obj.get('ev')!r}")
    kwargs: dict[str, Any] = {"t": obj.get("t")}
    for key, attr, kind in cls.FIELDS:
        if key not in obj and kind not in ("float?", "str?"):
            raise RecordError(f"{cls.EV}: missing {key}")
        value = obj.get(key)
        kwargs[attr] = tuple(value) if kind == "hexes" and isinstance(value, list) else value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - the field table matches the classes
        raise RecordError(str(exc)) from exc


def decode_record_line(obj: Any) -> RecordLine:
    """The record line for a parsed JSON value. Raises :class:`RecordError`."""
    return cast(RecordLine, _decode(obj, _RECORD_TYPES))


def decode_event(obj: Any) -> DeviceEvent:
    """The device event for a parsed JSON value. Raises :class:`RecordError`."""
    return cast(DeviceEvent, _decode(obj, _EVENT_TYPES))


class JsonlWriter:
    """Appends lines to a JSON-lines file, one ``write()`` per line (see the invariants).

    Args:
        path: the file; created (with its parent directories) if missing, appended to.
        fsync: fsync after each line (the controller's record survives a power loss).
    """

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._fsync = fsync

    def write(self, line: RecordLine | DeviceEvent) -> None:
        """Append ``line``; it is in the kernel (and on disk with ``fsync``) on return."""
        os.write(self._fd, (encode(line) + "\n").encode())
        if self._fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
