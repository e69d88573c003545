"""Connecting to a relay: wss:// with the system's (or SSL_CERT_FILE's) trust, and one clear
reason for every way a connection cannot be opened (RelayUnreachable), for register() and for a
running client (ConnectFailed events, fail-fast waits, link_code() and devices())."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest

from tests.harness import ClientLab, FixedRandom, RelayLab, TcpHolder, free_port, until
from tests.tls import TlsFront, self_signed
from tidings.client import Connected, ConnectFailed, Disconnected, register
from tidings.client.connect import RELAY_PATH, why_unreachable
from tidings.errors import ConfigError, ConnectionBroken, RelayUnreachable
from tidings.noise import public_key
from tidings.server.app import WS_PATH, load_or_create_key

URL = "ws://127.0.0.1:7400/v1"


# ----------------------------------------------------------------------- reasons, one line each


def test_reasons_say_what_failed_and_what_to_do() -> None:
    refused = why_unreachable(ConnectionRefusedError(111, "Connect call failed"), URL)
    assert refused == "connection refused by 127.0.0.1:7400 (is the relay running?)"
    dns = why_unreachable(socket.gaierror(-2, "Name or service not known"), "ws://relay.example/v1")
    assert dns == "cannot resolve host 'relay.example' (Name or service not known)"
    assert why_unreachable(TimeoutError(), URL) == "no answer within 10 s"
    assert "use ws://" in why_unreachable(TimeoutError(), "wss://127.0.0.1:7400/v1")
    assert "use ws://" in why_unreachable(ConnectionResetError(), "wss://127.0.0.1:7400/v1")
    assert "use wss://" in why_unreachable(EOFError(), URL)
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "self-signed certificate"
    assert why_unreachable(verify, "wss://relay.example/v1") == (
        "TLS: the certificate of relay.example is not trusted (self-signed certificate); "
        "set SSL_CERT_FILE to a CA bundle that has its issuer"
    )


async def test_register_with_no_relay_says_connection_refused(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}/v1"
    with pytest.raises(RelayUnreachable) as raised:
        await register(tmp_path / "alice", url, "alice")
    assert raised.value.url == url
    assert "connection refused" in raised.value.reason
    assert str(raised.value).startswith(f"cannot reach the relay at {url}: ")


async def test_a_url_without_the_relays_path_says_which_url_to_use(
    tmp_path: Path, relays: RelayLab
) -> None:
    relay = await relays.start()
    bare = relay.url.removesuffix(RELAY_PATH)  # ws://127.0.0.1:PORT, as a newcomer types it
    with pytest.raises(RelayUnreachable) as raised:
        await register(tmp_path / "alice", bare, "alice")
    assert "404" in raised.value.reason
    assert f"the relay listens on /v1: try {bare}/v1" in raised.value.reason
    assert WS_PATH.decode() == RELAY_PATH  # the client's path is the server's
    await register(tmp_path / "alice", relay.url, "alice")  # the right URL then works


async def test_wss_to_a_plain_endpoint_says_it_is_not_tls(tmp_path: Path) -> None:
    holder = TcpHolder()  # answers the TLS ClientHello by closing, as a plain server does
    port = await holder.start()
    try:
        url = f"wss://127.0.0.1:{port}/v1"
        attempt = asyncio.ensure_future(register(tmp_path / "alice", url, "alice"))
        writer = await holder.next()
        writer.transport.abort()
        with pytest.raises(RelayUnreachable) as raised:
            await attempt
        assert "use ws://" in raised.value.reason, raised.value.reason
    finally:
        await holder.close()


# ----------------------------------------------------------------------------------- wss://


async def test_wss_with_an_untrusted_certificate_is_refused_with_the_reason(
    relays: RelayLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = await relays.start()
    assert relay.address is not None
    cert, key = self_signed(tmp_path)
    front = TlsFront(cert, key, relay.address[1])
    port = await front.start()
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    try:
        with pytest.raises(RelayUnreachable) as raised:
            await register(tmp_path / "alice", f"wss://127.0.0.1:{port}/v1", "alice")
        assert raised.value.reason.startswith("TLS: the certificate of 127.0.0.1 is not trusted")
        assert "SSL_CERT_FILE" in raised.value.reason
    finally:
        await front.close()


async def test_wss_through_a_tls_front_works_with_ssl_cert_file(
    relays: RelayLab, clients: ClientLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = await relays.start()
    assert relay.address is not None
    cert, key = self_signed(tmp_path)
    front = TlsFront(cert, key, relay.address[1])
    port = await front.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the operator's private CA
    try:
        home = tmp_path / "alice"
        identity = await register(home, f"wss://127.0.0.1:{port}/v1", "alice")
        assert identity.server_url.startswith("wss://")
        alice = await clients.start(home)  # a running client connects over TLS too
        assert await alice.client.devices("alice") == (1,)
        await alice.client.close()
    finally:
        await front.close()


# ------------------------------------------------------------------------- a running client


async def test_a_client_reports_each_failed_attempt_and_fails_fast_when_asked(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    home = await clients.register("alice")
    assert relay.address is not None
    port = relay.address[1]
    await relay.stop()
    alice = await clients.start(home, connect=False, rng=FixedRandom(0.01))
    try:
        failed = await until(alice.events, lambda e: isinstance(e, ConnectFailed))
        assert isinstance(failed, ConnectFailed)
        assert failed.attempt == 1 and failed.retry_in == pytest.approx(0.005)  # ≤ 0.5 s
        assert "connection refused" in failed.reason
        with pytest.raises(RelayUnreachable, match="connection refused"):
            await alice.client.wait_connected(30, fail_fast=True)
        with pytest.raises(RelayUnreachable, match="connection refused"):
            await alice.client.link_code()
        with pytest.raises(RelayUnreachable):
            await alice.client.devices("bob")
        later = await until(alice.events, lambda e: isinstance(e, ConnectFailed) and e.attempt >= 3)
        assert isinstance(later, ConnectFailed)

        await relays.start(port=port)
        await until(alice.events, lambda e: isinstance(e, Connected))
        code, _ = await alice.client.link_code()
        assert len(code) == 32  # the relay's 16 bytes and the link secret
    finally:
        await alice.client.close()
    with pytest.raises(ConnectionBroken, match="closed"):
        await alice.client.wait_connected(1, fail_fast=True)


async def test_a_relay_with_another_key_is_refused_for_good_unless_accepted(
    relays: RelayLab, clients: ClientLab, tmp_path: Path
) -> None:
    relay = await relays.start()
    home = await clients.register("alice")
    assert relay.address is not None
    port = relay.address[1]
    await relay.stop()
    relays.key = load_or_create_key(tmp_path / "another.key")  # server.key replaced
    await relays.start(port=port)

    alice = await clients.start(home, connect=False)
    closed = await until(alice.events, lambda e: isinstance(e, Disconnected))
    assert isinstance(closed, Disconnected) and closed.fatal
    assert "presents another key than the one pinned at registration" in closed.reason
    assert alice.client.fatal_message == closed.reason
    with pytest.raises(ConfigError, match="another key"):
        await alice.client.wait_connected(5, fail_fast=True)
    with pytest.raises(ConfigError, match="another key"):
        await alice.client.link_code()
    await alice.client.close()

    # The operator confirms the new key: accept it once; it is pinned from then on.
    again = await clients.start(home, accept_new_server_key=True)
    assert await again.client.devices("alice") == (1,)
    await again.client.close()
    pinned = await clients.start(home)
    assert pinned.client.identity.server_key == public_key(relays.key)
