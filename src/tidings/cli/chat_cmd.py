"""``tidings chat CONTACT``: an interactive conversation in the terminal.

The window (prompt_toolkit, full screen) has three parts: the conversation (the last messages,
then what comes), a state line (the connection, honestly: :func:`~.chat_log.state_text`) and
an input line. Enter sends the line: it is written to the durable outbox first, and shown only
then, with a mark that changes in place (… in the outbox, ✓ stored by the relay, ✓✓ delivered,
R read, ! refused for good with the relay's reason, ✗ expired). Received messages of the
conversation appear as they arrive; each is marked seen once it was drawn, and read (which
sends a read receipt if this device has them on), as ``listen --read`` does. Messages from
other contacts are announced and left unseen for ``listen`` or their own chat.

It runs the device itself (holding its lock, as ``listen``), or, when a daemon runs it, goes
through the daemon's API (:mod:`.remote`). Ctrl-C, Ctrl-D (on an empty line) or ``/quit``
leave with exit 0 after every line typed is durable in the outbox; what the relay has not
stored yet goes out the next time the device connects.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.data_structures import Point
from prompt_toolkit.filters import Condition
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import HSplit, Layout, Window
from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl

from ..client import Client, Disconnected, StorageFailed
from ..errors import ConfigError, DeviceBusy, StoreUnavailable, TidingsError
from .chat_log import ChatLog, Connecting, state_text
from .common import _config_flags, config_of, home_of
from .exits import Exit
from .history_cmd import DEFAULT_LIMIT, _account, _limit
from .remote import DaemonDevice, Device, Stream, open_daemon
from .terminal_text import for_terminal

__all__ = ["add_parser", "cmd_chat", "state_text"]

#: Seconds leaving waits for the lines typed just before to be written to the outbox (each
#: takes one local transaction, milliseconds; the bound is for a daemon that stopped answering).
STORE_ON_EXIT = 10.0
#: Seconds leaving lets the read receipts just queued reach the relay (when this process runs
#: the device; they stay in the outbox for the next start either way).
DRAIN_ON_EXIT = 3.0
#: Received messages the chat shows first when more of them were never displayed.
UNSEEN_FIRST = 1_000
#: The command that leaves.
QUIT = "/quit"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "chat",
        help="chat with a contact in this terminal",
        description="An interactive conversation with CONTACT: the last messages, then what "
        "comes. Type a line and press Enter to send it; it shows once it is in this device's "
        "durable outbox, with a mark that changes as it travels: … queued, ✓ stored by the "
        "relay, ✓✓ delivered, R read, ! refused (with the relay's reason), ✗ expired. "
        "Messages from CONTACT appear as they arrive and are marked read (read receipts go "
        "out if this device has them on: tidings read-receipts). The line above the input "
        "shows the connection (connecting, online, cannot reach the relay and when it tries "
        "again, disconnected). Ctrl-C, Ctrl-D or /quit leave (exit 0); nothing typed is "
        "lost: what the relay has not stored yet goes out the next time this device "
        "connects. Works beside a running daemon (through its API).",
    )
    p.add_argument("contact", type=_account, help="the other account")
    p.add_argument(
        "--history",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"earlier messages to show first (default {DEFAULT_LIMIT})",
    )
    p.add_argument("--home", help="device directory (env TIDINGS_HOME)")
    _config_flags(p)
    p.set_defaults(func=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    """Run the chat until the user leaves."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(
            "tidings: chat needs a terminal; scripts use `tidings send` and `tidings listen`",
            file=sys.stderr,
        )
        return Exit.USAGE
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    home = home_of(args)
    config = config_of(args)  # a bad setting: one line, exit 1, before anything runs
    device: Device
    try:
        device = Client(home, owner=f"tidings {args.command}", config=config)
    except DeviceBusy as busy:
        device = await open_daemon(home, busy)  # the daemon runs it: chat through it
    stream = device.events()
    try:
        chat = _Chat(device, stream, args.contact)
        await chat.begin(args.history)
        return await chat.run()
    finally:
        stream.close()
        await device.close()


class _Chat:
    """One chat: the log, the window, and the tasks that pump events, sends and marks."""

    def __init__(self, device: Device, stream: Stream, contact: str) -> None:
        self.device = device
        self.stream = stream
        self.log = ChatLog(device.me, contact)
        self.typed: asyncio.Queue[str] = asyncio.Queue()
        self.drawn: asyncio.Queue[list[bytes]] = asyncio.Queue()
        self.unsent: list[str] = []
        self.failure: TidingsError | None = None
        self.app = _window(self)

    async def begin(self, history: int) -> None:
        """Show the conversation so far and the state, and start connecting."""
        store = self.device.store
        self.log.note(f"chat with {self.log.contact}: Enter sends; /quit or Ctrl-D leaves")
        window = store.messages(self.log.conversation, history)
        shown = {m.message_id for m in window}
        older = [
            m
            for m in store.unseen(UNSEEN_FIRST)
            if m.conversation == self.log.conversation and m.message_id not in shown
        ]
        for m in older + window:  # what was never displayed first, as listen does
            self.log.add(m, store.message_status(m.message_id))
        if not window:
            self.log.note(f"no messages with {self.log.contact} yet")
        identity = store.get_identity()
        url = identity.server_url if identity is not None else "the relay"
        online = await _online(self.device)
        self.log.apply(Connecting(url))
        if online:
            self.log.state = "online"
        await self.device.start()

    async def run(self) -> int:
        """Until the user leaves (or the device stops); the exit code."""
        tasks = [
            asyncio.ensure_future(self._pump()),
            asyncio.ensure_future(self._send()),
            asyncio.ensure_future(self._mark()),
        ]
        try:
            await self.app.run_async()
        finally:
            tasks[0].cancel()
            await self._finish_sends()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._mark_drawn()
        return self._leave()

    def on_enter(self, buffer: Buffer) -> bool:
        """The input line's Enter: send it (or leave on /quit). False: clear the line."""
        text = buffer.text
        if text.strip() == QUIT:
            self.app.exit()
        elif text.strip():
            self.typed.put_nowait(text)
        return False

    def on_drawn(self, _: object) -> None:
        """After each redraw: what was drawn is seen (the marker marks it)."""
        ids = self.log.take_unshown()
        if ids:
            self.drawn.put_nowait(ids)

    def _stop(self, failure: TidingsError) -> None:
        self.failure = failure
        if self.app.is_running:
            self.app.exit()

    async def _pump(self) -> None:
        try:
            async for event in self.stream:
                if isinstance(event, StorageFailed):
                    self._stop(StoreUnavailable(event.state, event.message))
                elif isinstance(event, Disconnected) and event.fatal:
                    self._stop(ConfigError(self.device.fatal_message or event.reason))
                if self.log.apply(event):
                    self.app.invalidate()
        except TidingsError as exc:  # the daemon stopped
            self._stop(exc)

    async def _send(self) -> None:
        """One line at a time, in the order typed (the daemon's API could reorder calls)."""
        while True:
            text = await self.typed.get()
            try:
                await self._send_one(text)
            finally:
                self.typed.task_done()

    async def _send_one(self, text: str) -> None:
        try:
            mid = await self.device.send(self.log.contact, text)
        except StoreUnavailable as exc:
            self.unsent.append(text)
            self._stop(exc)
            return
        except TidingsError as exc:  # too long, outbox full: say so, keep chatting
            self.unsent.append(text)
            self.log.note(f"not sent ({exc}): {text}")
        else:
            m = self.device.store.message(mid)
            if m is not None:
                self.log.add(m, self.device.store.message_status(mid))
        self.app.invalidate()

    async def _mark(self) -> None:
        while True:
            await self._mark_one(await self.drawn.get())

    async def _mark_one(self, ids: list[bytes]) -> None:
        try:
            await self.device.mark_read(ids)  # read receipts go out only if they are on
            self.device.mark_seen(ids)
        except TidingsError as exc:
            self._stop(exc)

    async def _mark_drawn(self) -> None:
        """What was drawn before leaving and not marked yet."""
        while not self.drawn.empty() and self.failure is None:
            await self._mark_one(self.drawn.get_nowait())

    async def _finish_sends(self) -> None:
        """Every line typed is in the outbox (or reported unsent) before leaving."""
        try:
            async with asyncio.timeout(STORE_ON_EXIT):
                await self.typed.join()
        except TimeoutError:
            while not self.typed.empty():
                self.unsent.append(self.typed.get_nowait())

    def _leave(self) -> int:
        for text in self.unsent:
            print(f"tidings: not sent: {text}", file=sys.stderr)
        if self.failure is not None:
            raise self.failure
        pending = self.log.pending()
        if pending:
            what = "1 message" if pending == 1 else f"{pending} messages"
            then = (
                "the daemon sends them"
                if isinstance(self.device, DaemonDevice)
                else "they go out the next time this device connects"
            )
            print(
                f"{what} to {self.log.contact} not yet stored by the relay: in this device's "
                f"outbox; {then}",
                flush=True,
            )
        return Exit.OK


async def _online(device: Device) -> bool:
    if isinstance(device, DaemonDevice):
        return await device.online()
    return False  # this process connects now


def _window(chat: _Chat) -> Application[None]:
    """The full-screen window: conversation, state line, input line."""
    entry = Buffer(multiline=False, accept_handler=chat.on_enter)
    keys = KeyBindings()

    @keys.add("c-c")
    def _interrupt(event: KeyPressEvent) -> None:
        event.app.exit()

    @keys.add("c-d", filter=Condition(lambda: not entry.text))
    def _end(event: KeyPressEvent) -> None:
        event.app.exit()

    def conversation() -> str:
        return "\n".join(chat.log.lines())

    def bottom() -> Point:  # the last line, so the pane scrolls with what comes
        return Point(0, conversation().count("\n"))

    def state() -> str:
        return for_terminal(f" {chat.log.contact} · {chat.log.state}")

    layout = HSplit(
        [
            Window(FormattedTextControl(conversation, get_cursor_position=bottom), wrap_lines=True),
            Window(FormattedTextControl(state), height=1, style="reverse"),
            entry_window := Window(BufferControl(entry), height=1, get_line_prefix=_prompt),
        ]
    )
    app: Application[None] = Application(
        layout=Layout(layout, focused_element=entry_window), key_bindings=keys, full_screen=True
    )
    app.after_render += chat.on_drawn
    return app


def _prompt(line: int, wrap: int) -> str:
    return "› "
