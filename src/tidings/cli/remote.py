"""The device as a running ``tidings daemon`` serves it, for ``send``, ``listen`` and ``chat``.

One process runs a device. When the daemon runs it, ``send`` and ``listen`` do not fail beside it
but go through its local API (docs/api.md): :class:`DaemonDevice` offers what they use of a
:class:`~tidings.client.Client` — send, the event stream, unseen and seen, read, drain — over
the socket, and reads the store (as ``trace`` does) for what the events refer to.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, Protocol

from ..api.client import ApiClient
from ..api.methods import REFUSED, RELAY_UNREACHABLE, STORE_UNAVAILABLE
from ..api.rpc import ApiError
from ..client.events import (
    CatchingUp,
    ClientEvent,
    Connected,
    ConnectFailed,
    DevicesChanged,
    Disconnected,
    IdentityChanged,
    MessageReceived,
    MessagesExpired,
    SendRefused,
    StatusChanged,
    StorageFailed,
    TimerChanged,
)
from ..client.home import prepare_home
from ..client.store import ClientStore, StoredMessage
from ..delivery import ContentKind, Status
from ..errors import (
    ConfigError,
    ConnectionBroken,
    DeviceBusy,
    RefusedError,
    RelayUnreachable,
    StoreUnavailable,
)
from ..refs import DeviceRef

__all__ = ["DaemonDevice", "Device", "Stream", "open_daemon"]

#: The lock holder's name that says a daemon runs the device (``Client(owner=…)``).
DAEMON = "tidings daemon"


async def open_daemon(home: Path, busy: DeviceBusy) -> DaemonDevice:
    """The daemon that holds ``home``, or ``busy`` raised again if no daemon does."""
    if busy.command != DAEMON:
        raise busy
    try:
        return await DaemonDevice.open(home)
    except OSError:
        raise busy from None


class Stream(Protocol):
    """A stream of client events (:class:`~tidings.client.EventStream`, or the daemon's)."""

    def __aiter__(self) -> Stream: ...
    async def __anext__(self) -> ClientEvent: ...
    def pending(self) -> int: ...
    def close(self) -> None: ...


class Device(Protocol):
    """What ``send`` and ``listen`` use of a device: a :class:`~tidings.client.Client` they
    run, or a :class:`DaemonDevice`."""

    @property
    def store(self) -> ClientStore: ...
    @property
    def me(self) -> DeviceRef: ...
    @property
    def storage_failed(self) -> StorageFailed | None: ...
    @property
    def fatal_message(self) -> str: ...

    def events(self) -> Stream: ...
    async def start(self) -> None: ...
    async def send(self, to: str, body: str) -> bytes: ...
    def unseen(self, limit: int, after: int = 0) -> list[StoredMessage]: ...
    def mark_seen(self, message_ids: list[bytes]) -> int: ...
    async def mark_read(self, message_ids: list[bytes]) -> int: ...
    async def drain(self, timeout: float) -> bool: ...
    async def close(self) -> None: ...


def _device(text: str) -> DeviceRef:
    account, _, number = text.rpartition(".")
    return DeviceRef(account, int(number))


class DaemonDevice:
    """A device run by its daemon, used through the API."""

    storage_failed: StorageFailed | None = None

    def __init__(self, api: ApiClient, store: ClientStore, me: DeviceRef) -> None:
        self.api = api
        self.store = store
        self.me = me
        self.fatal_message = ""
        self._stream = _RemoteStream(self)

    @classmethod
    async def open(cls, home: Path) -> DaemonDevice:
        api = await ApiClient.open(home)
        store = ClientStore(prepare_home(home))
        identity = store.get_identity()
        if identity is None:
            store.close()
            await api.close()
            raise ConfigError(f"{home} holds no registered device")
        await api.call("subscribe")  # from here on nothing is missed
        return cls(api, store, DeviceRef(identity.account, identity.device_id))

    def events(self) -> _RemoteStream:
        return self._stream

    async def start(self) -> None:
        """The daemon is connected already (or connecting)."""

    async def online(self) -> bool:
        """Whether the daemon's device has a session with the relay now."""
        return bool((await self._call("status"))["connected"])

    async def send(self, to: str, body: str) -> bytes:
        return bytes.fromhex((await self._call("send", to=to, text=body))["message_id"])

    def unseen(self, limit: int, after: int = 0) -> list[StoredMessage]:
        return self.store.unseen(limit, after)

    def mark_seen(self, message_ids: list[bytes]) -> int:
        """Tell the daemon (a notification: it runs, nothing is answered)."""
        if message_ids:
            params = {"message_ids": [m.hex() for m in message_ids]}
            self.api.send_line({"jsonrpc": "2.0", "method": "mark_seen", "params": params})
        return len(message_ids)

    async def link_code(self) -> tuple[bytes, float]:
        answer = await self._call("link_code")
        return bytes.fromhex(answer["code"]), float(answer["expires_at"])

    async def safety_number(self, account: str, **change: Any) -> dict[str, Any] | None:
        """The API's ``safety_number`` (``verify=NUMBER`` or ``unverify=True`` to change it)."""
        answer = await self._call("safety_number", account=account, **change)
        return dict(answer) if answer is not None else None

    async def set_read_receipts(self, enabled: bool) -> bool:
        """Set the device's read receipts; the effective value after it."""
        return bool((await self._call("settings", read_receipts=enabled))["read_receipts"])

    async def mark_read(self, message_ids: list[bytes]) -> int:
        ids = [m.hex() for m in message_ids]
        return int((await self._call("mark_read", message_ids=ids))["newly_read"])

    async def drain(self, timeout: float) -> bool:
        """Until the daemon's outbox is empty, at most ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (await self._call("status"))["outbox"]:
            if loop.time() >= deadline:
                return False
            with contextlib.suppress(TimeoutError):  # any event may be the ✓ we wait for
                await self._stream.wait_change(deadline - loop.time())
        return True

    async def close(self) -> None:
        await self.api.close()
        self.store.close()

    async def call(self, method: str, **params: Any) -> Any:
        """Any API method (docs/api.md); its errors as the CLI's."""
        return await self._call(method, **params)

    async def _call(self, method: str, **params: Any) -> Any:
        try:
            return await self.api.call(method, **params)
        except ApiError as exc:
            data = exc.data if isinstance(exc.data, dict) else {}
            if exc.code == STORE_UNAVAILABLE:
                raise StoreUnavailable(data.get("state", "error"), exc.message) from None
            if exc.code == RELAY_UNREACHABLE and "url" in data:
                raise RelayUnreachable(data["url"], data["reason"]) from None
            if exc.code == RELAY_UNREACHABLE:
                raise ConnectionBroken(exc.message) from None
            if exc.code == REFUSED:
                raise RefusedError(
                    data["code"], exc.message, data.get("retry_after") or 0.0
                ) from None
            raise ConfigError(exc.message) from None
        except ConnectionError:
            raise ConfigError("the daemon closed the connection (stopped?)") from None


class _RemoteStream:
    """The daemon's event notifications as client events."""

    def __init__(self, device: DaemonDevice) -> None:
        self._device = device
        self._held: list[ClientEvent] = []

    def __aiter__(self) -> _RemoteStream:
        return self

    async def __anext__(self) -> ClientEvent:
        while True:
            if self._held:
                return self._held.pop(0)
            event = self._convert(await self._next())
            if event is not None:
                return event

    async def _next(self, timeout: float | None = None) -> dict[str, Any]:
        api = self._device.api
        getter = asyncio.ensure_future(api.next_event(timeout))
        closed = asyncio.ensure_future(api.wait_closed())
        done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        if getter in done:
            return getter.result()
        getter.cancel()
        raise ConfigError("the daemon stopped")

    async def wait_change(self, timeout: float) -> None:
        event = self._convert(await self._next(timeout))
        if event is not None:
            self._held.append(event)

    def pending(self) -> int:
        return len(self._held) + self._device.api.pending_events()

    def close(self) -> None:
        """Nothing to stop here: the subscription ends with :meth:`DaemonDevice.close`."""

    def _convert(self, e: dict[str, Any]) -> ClientEvent | None:
        kind = e.get("event")
        if kind == "message":
            m = self._device.store.message(bytes.fromhex(e["message_id"]))
            return MessageReceived(m, bool(e["late"])) if m is not None else None
        if kind == "status":
            device = None if e["device"] == "all" else _device(e["device"])
            mid = bytes.fromhex(e["message_id"])
            return StatusChanged(
                mid, device, Status[e["status"].upper()], Status[e["overall"].upper()], e["at"]
            )
        if kind == "refused":
            return SendRefused(
                bytes.fromhex(e["message_id"]),
                e["recipient"],
                ContentKind[e["kind"].upper()],
                e["code"],
                e["reason"],
                e["at"],
                e["retry_at"],
            )
        if kind == "connected":
            return Connected(e["pattern"])
        if kind == "connect-failed":
            return ConnectFailed(e["reason"], e["attempt"], e["retry_in"])
        if kind == "catching-up":
            return CatchingUp(e["done"], e["total"], e["rate"], e["finished"])
        if kind == "disconnected":
            if e["fatal"]:
                self._device.fatal_message = f"the daemon's device stopped: {e['reason']}"
            return Disconnected(e["code"], e["reason"], e["fatal"])
        if kind == "storage-failed":
            return StorageFailed(e["state"], e["message"])
        if kind == "identity-changed":
            return IdentityChanged(_device(e["device"]), e["new"])
        if kind == "devices-changed":
            added, removed = (
                tuple(_device(d).device_id for d in e[k]) for k in ("added", "removed")
            )
            return DevicesChanged(e["account"], added, removed, e["at"])
        if kind == "timer":
            return TimerChanged(e["conversation"], e["seconds"], _device(e["by"]), e["at"])
        if kind == "expired":
            ids = tuple(bytes.fromhex(m) for m in e["message_ids"])
            return MessagesExpired(ids, tuple(e["conversations"]), e["at"])
        return None  # gaps, decryption failures: the daemon's own concern
