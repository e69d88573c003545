"""The checker's group rules (``group-chat``, :mod:`.scenarios_groups`), per member device.

They apply to a run whose devices kept group logs (``RUN/groups/acct.N.jsonl``,
:mod:`.device_groups`), on top of :data:`.checker_rules.RULES` (which judge a group message as
any: every other device of the sender's account must hold it). Here a group message M is a
``group_sent`` line of its sender device S: its id and ``members``, the member accounts S's
view held when it sealed M. M is **for** every lab device of those accounts but S.

"After a leave" is defined from the record, per sender: the leave of account X takes effect
at S when S's view drops X (its ``group`` line); a message S seals from then on names no X in
its ``members``. The lab records each membership change as a fault (``group_add`` /
``group_leave``, target the account) whose ``end`` is when every member device had logged
it; every message sealed after that end must name the group as it then was.

=====================  ===========================================================================
kind                   a violation is
=====================  ===========================================================================
``group_lost``         after ``settled``: a device M is for has no ``received`` line for it, though
                       the relay ✓'d M (a ``status`` sent/delivered/read at S); for a device of
                       an account that left, only if that ✓ came by the leave's ``owed_until``
``group_duplicated``   a device has two ``received`` lines for M from S
``group_reordered``    a device received S's group messages out of the order S sealed them
``leaver_received``    a device received M though M was not for its account: sent after the
                       account left or was removed (or before it joined)
``stale_members``      M was sealed after a ``group_add``/``group_leave`` fault's end and names
                       the group as it was before the change
=====================  ===========================================================================

A leaver's own device drops a group message that reaches it after its leave (by design: it
is no member then), even one sealed for it before; so what it is owed ends at the leave fault's
``owed_until`` (the lab time at which the scenario saw the leaver's devices hold every message
for them the relay had ✓'d; the fault's start if absent).

A message whose ``group_sent`` line a kill -9 of its sender cut off (its ``composed`` line is
in a group conversation) has unknown members: only ``group_duplicated`` and
``group_reordered`` judge it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checker_rules import Violation
from .checker_view import RunView
from .device_groups import GROUPS_DIR
from .record import Composed, Received, StatusChanged

__all__ = [
    "ADD_FAULT",
    "GROUP_KINDS",
    "GROUP_RULES",
    "LEAVE_FAULT",
    "GroupMessage",
    "GroupRun",
    "group_counts",
    "read_groups",
]

GROUP_KINDS = (
    "group_lost",
    "group_duplicated",
    "group_reordered",
    "leaver_received",
    "stale_members",
)

#: Fault kinds of a membership change (target: the account added, or the one that left).
ADD_FAULT = "group_add"
LEAVE_FAULT = "group_leave"

_ACKED = frozenset({"sent", "delivered", "read"})


@dataclass(frozen=True, slots=True)
class GroupMessage:
    """One group message: its sender device, id (hex), when it was sealed (lab clock), its
    place in the sender's order, and the member accounts it was for (None: unknown)."""

    sender: str
    mid: str
    t: float
    n: int
    members: frozenset[str] | None


@dataclass(slots=True)
class GroupRun:
    """What the group rules read: the group messages, and each device's receptions of them."""

    messages: dict[tuple[str, str], GroupMessage] = field(default_factory=dict)
    #: device -> its ``received`` lines of group messages, in log order: (sender, mid)
    received: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    #: (sender, mid) -> when the relay first ✓'d it (the sender's first status line)
    acked: dict[tuple[str, str], float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _lines(path: Path, errors: list[str]) -> list[dict[str, Any]]:
    out = []
    try:
        text = path.read_text()
    except OSError as exc:
        errors.append(f"cannot read {path}: {exc}")
        return []
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue  # a line cut by a kill -9
        if isinstance(line, dict):
            out.append(line)
    return out


def read_groups(view: RunView) -> GroupRun | None:
    """The run's group messages and receptions; None if no device kept a group log."""
    folder = view.record.run_dir / GROUPS_DIR
    if not folder.is_dir() or not any(folder.glob("*.jsonl")):
        return None
    run = GroupRun()
    sealed: dict[str, dict[str, list[str]]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        label = path.name[: -len(".jsonl")]
        for line in _lines(path, run.errors):
            if line.get("ev") == "group_sent" and isinstance(line.get("members"), list):
                sealed.setdefault(label, {})[str(line.get("mid"))] = line["members"]
    for label, events in sorted(view.record.events.items()):
        order = 0
        mine = sealed.get(label, {})
        for e in events:
            if isinstance(e, Composed) and e.conv.startswith("group:"):
                members = mine.get(e.mid)
                known = frozenset(members) if members is not None else None
                run.messages[(label, e.mid)] = GroupMessage(label, e.mid, e.t, order, known)
                order += 1
            elif isinstance(e, Received) and e.conv.startswith("group:"):
                run.received.setdefault(label, []).append((e.sender, e.mid))
            elif isinstance(e, StatusChanged) and e.status in _ACKED:
                run.acked.setdefault((label, e.mid), e.t)
    return run


def _account(label: str) -> str:
    return label.rpartition(".")[0]


def _devices(view: RunView) -> list[str]:
    return sorted({d.label for d in view.record.devices})


def group_lost(view: RunView) -> Iterator[Violation]:
    """``group_lost``: judged only once the run settled."""
    run = read_groups(view)
    if run is None or not view.settled:
        return
    have = {(d, s, m) for d, got in run.received.items() for s, m in got}
    owed = _owed_until(view)
    for (sender, mid), m in sorted(run.messages.items()):
        acked = run.acked.get((sender, mid))
        if m.members is None or acked is None:
            continue
        for device in _devices(view):
            if _account(device) not in m.members or device == sender:
                continue
            if acked > owed.get(_account(device), acked):
                continue  # ✓'d after its account began to leave: it may drop it
            if (device, sender, mid) not in have:
                yield Violation(
                    "group_lost",
                    mid,
                    f"{sender} #{m.n} for {', '.join(sorted(m.members))} (✓): not at {device}",
                    device=device,
                )


def _owed_until(view: RunView) -> dict[str, float]:
    """For each account that left: until when (lab clock) a ✓ makes a message owed to its
    devices — the leave fault's ``owed_until``, else its start."""
    out: dict[str, float] = {}
    for f in view.record.faults:
        if f.kind == LEAVE_FAULT:
            until = f.detail.get("owed_until", f.start)
            out[f.target] = float(until) if isinstance(until, (int, float)) else f.start
    return out


def group_duplicated(view: RunView) -> Iterator[Violation]:
    run = read_groups(view)
    if run is None:
        return
    for device, got in sorted(run.received.items()):
        for (sender, mid), n in sorted(Counter(got).items()):
            if n > 1:
                yield Violation(
                    "group_duplicated", mid, f"{sender}'s message received {n}×", device=device
                )


def group_reordered(view: RunView) -> Iterator[Violation]:
    """``group_reordered``: per sender device, its messages in the order it sealed them."""
    run = read_groups(view)
    if run is None:
        return
    for device, got in sorted(run.received.items()):
        last: dict[str, int] = {}
        for sender, mid in got:
            m = run.messages.get((sender, mid))
            if m is None:
                continue  # not sealed by a lab device: the base rules' phantom
            if m.n < last.get(sender, -1):
                yield Violation(
                    "group_reordered",
                    mid,
                    f"{sender} #{m.n} received after its #{last[sender]}",
                    device=device,
                )
            last[sender] = max(m.n, last.get(sender, -1))


def leaver_received(view: RunView) -> Iterator[Violation]:
    run = read_groups(view)
    if run is None:
        return
    for device, got in sorted(run.received.items()):
        for sender, mid in got:
            m = run.messages.get((sender, mid))
            if m is not None and m.members is not None and _account(device) not in m.members:
                yield Violation(
                    "leaver_received",
                    mid,
                    f"{sender} #{m.n} was for {', '.join(sorted(m.members))}, not "
                    f"{_account(device)}, yet reached {device}",
                    device=device,
                )


def stale_members(view: RunView) -> Iterator[Violation]:
    """``stale_members``: the membership changes the record names, held against each
    message sealed after every member device had logged them."""
    run = read_groups(view)
    if run is None:
        return
    changes = sorted(
        (f.end, f.kind, f.target)
        for f in view.record.faults
        if f.kind in (ADD_FAULT, LEAVE_FAULT) and f.end is not None
    )
    for (sender, mid), m in sorted(run.messages.items()):
        if m.members is None:
            continue
        state: dict[str, bool] = {}
        for end, kind, account in changes:
            if end < m.t:
                state[account] = kind == ADD_FAULT
        for account, member in sorted(state.items()):
            if (account in m.members) != member:
                was = "left" if not member else "joined"
                yield Violation(
                    "stale_members",
                    mid,
                    f"{sender} #{m.n} sealed for {', '.join(sorted(m.members))} after {account} "
                    f"{was} (every member device had logged it)",
                    device=sender,
                )


def group_errors(view: RunView) -> Iterator[Violation]:
    run = read_groups(view)
    for error in run.errors if run is not None else []:
        yield Violation("record_error", "", error)


def group_counts(view: RunView) -> dict[str, Any]:
    """The run's group figures: messages sealed, ✓'d, and received per device."""
    run = read_groups(view)
    if run is None:
        return {}
    return {
        "sent": len(run.messages),
        "acked": sum(k in run.acked for k in run.messages),
        "received": {d: len(run.received.get(d, [])) for d in _devices(view)},
    }


GROUP_RULES = (
    group_errors,
    group_lost,
    group_duplicated,
    group_reordered,
    leaver_received,
    stale_members,
)
