"""``tidings push register|unregister|status`` and ``tidings push-listen``: this device's Web Push
subscription at the relay (docs/protocol.md §15), and a small receiver for it
(:mod:`.push_listen`).

Each goes through the running daemon's API when a daemon runs the device, and otherwise runs the
device for the one request, as ``link-code`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..api import methods
from ..api.client import ApiClient
from ..api.rpc import ApiError
from ..client import Client
from ..errors import ConfigError, ConnectionBroken, DeviceBusy, RefusedError
from .common import _common, _config_flags, _print, config_of, home_of
from .push_listen import PushListener, Subscription, load_or_create_subscription, save_subscription
from .remote import DAEMON

#: Seconds a push command waits for the session and then for the relay's answer.
PUSH_WAIT = 30.0

#: The device API's code for a refusal by the relay (``tidings.api.methods.REFUSED``).
_REFUSED = methods.REFUSED


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``push`` and ``push-listen``."""
    p = sub.add_parser(
        "push",
        help="this device's Web Push subscription at the relay (wake-ups while offline)",
        description="Register, drop or show the Web Push subscription (RFC 8030/8291) the relay "
        "wakes this device through while it has no connection. The wake-ups carry nothing but "
        "a random nonce: the device connects and fetches its messages itself.",
    )
    what = p.add_subparsers(dest="push_command", required=True, metavar="ACTION")
    r = what.add_parser("register", help="register a subscription (endpoint and keys)")
    r.add_argument("endpoint", help="the push service's URL for this subscription")
    r.add_argument("--p256dh", required=True, help="the subscription's public key (base64url)")
    r.add_argument("--auth", required=True, help="the subscription's auth secret (base64url)")
    u = what.add_parser("unregister", help="drop the subscription: no more wake-ups")
    s = what.add_parser("status", help="the subscription, and the relay's VAPID key")
    for q in (r, u, s):
        _common(q)
        _config_flags(q)
    p.set_defaults(func=cmd_push)

    p = sub.add_parser(
        "push-listen",
        help="receive Web Push wake-ups on loopback and wake the device",
        description="A small Web Push receiver: an HTTP server on loopback that is the push "
        "service of a subscription it makes (keys kept 0600 in HOME/push-listen.json). Each "
        "wake-up is decrypted (RFC 8291) and makes the running daemon connect and catch up "
        "(or prints a line). With --register it registers the subscription with the relay, "
        "which must run with --push-allow-private.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    p.add_argument("--register", action="store_true", help="register with the relay")
    p.add_argument("--count", type=int, default=0, help="exit after this many wake-ups")
    _common(p)
    _config_flags(p)
    p.set_defaults(func=cmd_push_listen)


# ---------------------------------------------------------------- push register|unregister|status


def _b64url(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise ConfigError(f"the {what} must be base64url") from None


def cmd_push(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    if args.push_command == "register":
        params = {"endpoint": args.endpoint, "p256dh": args.p256dh, "auth": args.auth}
        _b64url(args.p256dh, "p256dh key")
        _b64url(args.auth, "auth secret")
    result = asyncio.run(device_call(args, f"push_{args.push_command}", params))
    _print(args, result, _status_text(result))
    return 0


def _status_text(result: dict[str, Any]) -> str:
    state = result["state"]
    if state == "none":
        return f"push: no subscription (the relay's VAPID key: {result['vapid_key']})"
    why = "  (dead: register a new one)" if state == "dead" else ""
    return f"push: {state} {result['endpoint']}{why}\nrelay's VAPID key: {result['vapid_key']}"


async def device_call(args: argparse.Namespace, method: str, params: dict[str, Any]) -> Any:
    """``method`` of the device API, on the daemon if one runs the device, else on a device run
    for this call."""
    home = home_of(args)
    try:
        client = Client(home, owner=f"tidings {args.command}", config=config_of(args))
    except DeviceBusy as busy:
        if busy.command != DAEMON:
            raise
        api = await ApiClient.open(home)
        try:
            return await api.call(method, **params)
        except ApiError as exc:
            raise _api_failure(exc) from None
        finally:
            await api.close()
    try:
        await client.start()
        await client.wait_connected(PUSH_WAIT, fail_fast=True)
        try:
            async with asyncio.timeout(PUSH_WAIT):
                return await methods.call(client, methods.METHODS[method], params)
        except TimeoutError:
            raise ConnectionBroken(f"the relay did not answer within {PUSH_WAIT:g} s") from None
        except ApiError as exc:
            raise _api_failure(exc) from None
    finally:
        await client.close()


def _api_failure(exc: ApiError) -> Exception:
    data = exc.data if isinstance(exc.data, dict) else {}
    if exc.code == _REFUSED:
        return RefusedError(int(data.get("code", 0)), str(exc.message), 0.0)
    if exc.code == methods.RELAY_UNREACHABLE:
        return ConnectionBroken(str(exc.message))
    return ConfigError(str(exc.message))


# ---------------------------------------------------------------- push-listen


def cmd_push_listen(args: argparse.Namespace) -> int:
    home = home_of(args)
    if not home.is_dir():
        raise ConfigError(f"{home} holds no device: register one first (tidings register)")
    return asyncio.run(_listen(args, home))


async def _listen(args: argparse.Namespace, home: Path) -> int:
    sub = load_or_create_subscription(home)
    done = asyncio.Event()
    count = 0

    async def woken(plaintext: bytes) -> None:
        nonlocal count
        count += 1
        woke = await _wake(home)
        _print(
            args,
            {"event": "wake", "nonce_bytes": len(plaintext), "woke_daemon": woke},
            f"< wake-up ({len(plaintext)}-byte nonce): "
            + ("the device is connecting" if woke else "no daemon runs this device"),
        )
        if args.count and count >= args.count:
            done.set()

    listener = PushListener(sub, woken)
    endpoint = await listener.start(args.host, args.port)
    _print(args, {"event": "listening", "endpoint": endpoint}, f"push-listen: {endpoint}")
    watcher: asyncio.Task[None] | None = None
    if args.register:
        events = await _subscribed(home)  # first: a push-dead right after registering counts
        listener.sub = await _register(args, home, listener.sub, endpoint)
        if events is not None:
            watcher = asyncio.ensure_future(_reregister_when_dead(args, home, listener, events))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await listener.close()
    return 0


async def _register(
    args: argparse.Namespace, home: Path, sub: Subscription, endpoint: str
) -> Subscription:
    params = {
        "endpoint": endpoint,
        "p256dh": base64.urlsafe_b64encode(sub.keys.public).rstrip(b"=").decode(),
        "auth": base64.urlsafe_b64encode(sub.keys.auth).rstrip(b"=").decode(),
    }
    result = await device_call(args, "push_register", params)
    relay_key = _b64url(result["vapid_key"], "VAPID key")
    registered = replace(sub, vapid_key=relay_key)
    save_subscription(home, registered)
    _print(args, {"event": "registered", **result}, f"= registered with the relay: {endpoint}")
    return registered


async def _subscribed(home: Path) -> ApiClient | None:
    """The daemon's event stream (``None``: no daemon runs the device)."""
    try:
        api = await ApiClient.open(home)
    except OSError:
        return None
    await api.call("subscribe")
    return api


async def _reregister_when_dead(
    args: argparse.Namespace, home: Path, listener: PushListener, events: ApiClient
) -> None:
    """Register again whenever the relay says the subscription is dead (``push-dead``)."""
    try:
        while True:
            event = await events.next_event()
            if event.get("event") == "push-dead":
                listener.sub = await _register(args, home, listener.sub, listener.endpoint)
    finally:
        await events.close()


async def _wake(home: Path) -> bool:
    """Ask the daemon of ``home`` to connect now; whether one runs it."""
    try:
        api = await ApiClient.open(home)
    except OSError:
        return False
    try:
        await api.call("wake")
        return True
    except ApiError:
        return False
    finally:
        await api.close()
