"""What ``tidings chat`` shows: the conversation's lines with live marks, and the connection
state in one line.

Sans-I/O: :class:`ChatLog` takes stored messages and client events in and gives lines for
people out; it reads no clock and touches no store or terminal (``tidings.cli.chat_cmd`` pumps
it). A sent message's line changes in place as its status moves (… ✓ ✓✓ R, ✗ expired, !
failed; :func:`tidings.delivery.glyph`), with the relay's reason when it refused it. Received
messages wait in :attr:`ChatLog.unshown` until the front end has displayed them: only then
are they marked seen (and read).

:func:`state_text` is the one place the connection state is phrased.
"""

from __future__ import annotations

import datetime
from collections import deque
from dataclasses import dataclass

from ..client.events import (
    CatchingUp,
    ClientEvent,
    Connected,
    ConnectFailed,
    Disconnected,
    GapDetected,
    GapSkipped,
    IdentityChanged,
    MessageReceived,
    SendRefused,
    StatusChanged,
    StorageFailed,
)
from ..client.store import Direction, StoredMessage
from ..delivery import ContentKind, Status, direct_conversation, glyph
from ..refs import DeviceRef
from .show import _text
from .terminal_text import for_terminal

__all__ = ["SCROLLBACK", "ChatLog", "Connecting", "state_text"]

#: Lines the chat keeps (older ones scroll away; ``tidings history`` still has them): bounds
#: the memory of a chat left open for weeks.
SCROLLBACK = 2_000


@dataclass(frozen=True, slots=True)
class Connecting:
    """The chat's own state before any client event: a connection to ``url`` is being
    opened (by this process, or by the daemon that runs the device)."""

    url: str


#: What changes the state line.
StateEvent = Connecting | Connected | ConnectFailed | Disconnected | StorageFailed


def state_text(event: object) -> str | None:
    """The state line for ``event`` (``None``: it does not change the connection state)."""
    if isinstance(event, Connecting):
        return f"connecting to {event.url}"
    if isinstance(event, Connected):
        return "online"
    if isinstance(event, CatchingUp):
        if event.finished:
            return "online"
        rate = f" ({event.rate:,.0f}/s)" if event.done else ""
        return f"online, catching up {event.done:,} / {event.total:,}{rate}"
    if isinstance(event, ConnectFailed):
        return f"cannot reach the relay: {event.reason}; retry in {_seconds(event.retry_in)} s"
    if isinstance(event, Disconnected):
        why = event.reason or f"code {event.code}"
        return f"stopped: {why}" if event.fatal else f"disconnected: {why}; reconnecting"
    if isinstance(event, StorageFailed):
        return f"stopped: {event.message}"
    return None


def _seconds(t: float) -> str:
    return f"{round(t, 1):g}" if t < 10 else f"{t:.0f}"


def _clock(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S")


@dataclass(slots=True)
class _Line:
    """One line of the log: a message (``who`` set) or a note of the chat's own."""

    text: str
    at: float = 0.0
    who: str = ""
    message_id: bytes | None = None  #: a sent message: its mark is live
    status: Status = Status.PENDING
    note: str = ""  #: after the text: what the relay said (a refusal), or "late"

    def render(self) -> str:
        """The line to draw; what others wrote in it has its controls made visible."""
        return for_terminal(self._render())

    def _render(self) -> str:
        if not self.who:
            return f"  {self.text}"
        note = f"   ({self.note})" if self.note else ""
        if self.message_id is None:
            return f"[{_clock(self.at)}]    {self.who} › {self.text}{note}"
        return f"[{_clock(self.at)}] {glyph(self.status):2} {self.who} › {self.text}{note}"


class ChatLog:
    """The lines of one conversation, as the chat window shows them.

    Call :meth:`add` for each stored message to show (history, then each one sent), and
    :meth:`apply` for each client event; :meth:`lines` is what to draw. After drawing, take
    :meth:`take_unshown` and mark those messages seen.
    """

    def __init__(self, me: DeviceRef, contact: str, scrollback: int = SCROLLBACK) -> None:
        self.me = me
        self.contact = contact
        self.conversation = direct_conversation(me.account, contact)
        #: the connection state, for the state line
        self.state = ""
        self._lines: deque[_Line] = deque()
        self._scrollback = scrollback
        self._sent: dict[bytes, _Line] = {}
        self._unshown: list[bytes] = []

    def __len__(self) -> int:
        return len(self._lines)

    def lines(self) -> list[str]:
        """What to draw, oldest first."""
        return [line.render() for line in self._lines]

    def take_unshown(self) -> list[bytes]:
        """The received messages added since the last call: call it once they are drawn."""
        ids, self._unshown = self._unshown, []
        return ids

    def pending(self) -> int:
        """Sent messages of the log not yet stored by the relay (still in the outbox)."""
        return sum(1 for line in self._sent.values() if line.status is Status.PENDING)

    def add(self, m: StoredMessage, status: Status | None = None) -> None:
        """Show a stored message of this conversation (a sent one with its roll-up
        ``status``)."""
        body = m.body.decode(errors="replace")
        if not m.own:
            self._append(_Line(body, m.received_at or m.sent_at, str(m.sender)))
            self._unshown.append(m.message_id)
            return
        if m.direction is Direction.IN:  # a copy of what another device of this account sent
            self._unshown.append(m.message_id)
            # it came through the relay, which stores a send for all its devices at once: ✓
            status = status or Status.SENT
        who = "me" if m.sender == self.me else f"me ({m.sender})"
        line = _Line(body, m.sent_at, who, m.message_id, status or Status.PENDING)
        if m.failed_code is not None:
            line.status = Status.FAILED
            line.note = f"refused: {m.failed_reason or m.failed_code}"
        self._sent[m.message_id] = line
        self._append(line)

    def note(self, text: str) -> None:
        """A line of the chat's own (not a message)."""
        self._append(_Line(text))

    def apply(self, event: ClientEvent | Connecting) -> bool:
        """Take an event in; returns whether the lines or the state changed."""
        state = state_text(event)
        if state is not None:
            self.state = state
            return True
        if isinstance(event, MessageReceived):
            return self._received(event)
        if isinstance(event, StatusChanged):
            return self._status(event)
        if isinstance(event, SendRefused):
            return self._refused(event)
        if isinstance(event, GapDetected | GapSkipped):
            return self._note_if(event.conversation == self.conversation, event)
        if isinstance(event, IdentityChanged):
            return self._note_if(event.device.account == self.contact, event)
        return False

    def _received(self, event: MessageReceived) -> bool:
        m = event.message
        if m.conversation == self.conversation:
            self.add(m, None if m.direction is Direction.IN else Status.PENDING)
            if event.late:  # after a gap that was given up on (GapSkipped): out of order
                self._lines[-1].note = "late"
            return True
        if not m.own:  # left unseen: the next listen (or chat) shows it
            self.note(f"(a message from {m.sender}: tidings chat {m.sender.account})")
            return True
        return False

    def _status(self, event: StatusChanged) -> bool:
        line = self._sent.get(event.message_id)
        if line is None:
            return False
        line.status = event.overall
        if event.overall is not Status.PENDING and event.overall is not Status.FAILED:
            line.note = ""  # a refusal for now is over: the relay took it
        return True

    def _refused(self, event: SendRefused) -> bool:
        line = self._sent.get(event.message_id)
        if line is None or event.kind is not ContentKind.MESSAGE:
            return False
        why = f"{event.code_name}: {event.reason}" if event.reason else event.code_name
        if event.final:
            line.status = Status.FAILED
            line.note = f"refused: {why}"
        else:
            assert event.retry_at is not None
            line.note = f"refused for now: {why}; retry at {_clock(event.retry_at)}"
        return True

    def _note_if(self, relevant: bool, event: ClientEvent) -> bool:
        text = _text(event) if relevant else None
        if text is not None:
            self.note(text)
        return text is not None

    def _append(self, line: _Line) -> None:
        self._lines.append(line)
        while len(self._lines) > self._scrollback:
            old = self._lines.popleft()
            if old.message_id is not None:
                self._sent.pop(old.message_id, None)
