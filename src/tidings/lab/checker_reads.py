"""Devices of one account in step (issue 13), on what every device stored: a message read on
one of them is read on all of them, and a sent message has the same statuses on each.

==================  =======================================================================
kind                a violation is
==================  =======================================================================
``read_diverged``   a message from another account, stored on several devices of one account,
                    is read (``read_at``) on some of them and unread on others
``status_diverged`` a message sent by a device of an account, held by several of its devices
                    (the sender's row and the sent-message copies), has not reached the same
                    status at some recipient device on each of them (delivered ✓✓ and read
                    come to every device of the sender's account as receipts)
==================  =======================================================================

Both are judged only in a run whose record has an ``in_step`` fault line: read state and
receipts travel as end-to-end encrypted receipts through the outbox, so a device that stops
right after another one read a message may not have fetched the receipt yet; the
``multi-device`` scenario waits (bounded, every device running) until :func:`divergence` finds
nothing, then writes ``in_step``. Registered in :data:`tidings.lab.checker.ALL_RULES`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from tidings.client.store.records import Direction
from tidings.delivery import Status

from .checker_rules import Violation
from .checker_view import RunView, StoreSnapshot

__all__ = [
    "IN_STEP_FAULT",
    "READ_KINDS",
    "READ_RULES",
    "Divergence",
    "divergence",
    "in_step",
]

#: The record's fault kind that asks for these rules (the wait for convergence ended).
IN_STEP_FAULT = "in_step"

READ_KINDS = ("read_diverged", "status_diverged")

#: The statuses every device of the sender's account learns (receipts go to all of them; ✓
#: comes only to the sending device, from the relay).
_SHARED = (Status.DELIVERED, Status.READ)


@dataclass(frozen=True, slots=True)
class Divergence:
    """A message on which the devices of ``account`` disagree: ``kind`` says about what,
    ``detail`` how (for people)."""

    kind: str
    account: str
    mid: str
    detail: str


def divergence(
    stores: Mapping[str, StoreSnapshot], accounts: Mapping[str, Sequence[str]]
) -> list[Divergence]:
    """Every disagreement between the devices of one account, in account and message order."""
    out: list[Divergence] = []
    for account in sorted(accounts):
        snaps = [stores[d] for d in accounts[account] if d in stores]
        out += _reads(account, snaps)
        out += _statuses(account, snaps)
    return out


def _reads(account: str, snaps: Sequence[StoreSnapshot]) -> list[Divergence]:
    read: dict[str, set[str]] = defaultdict(set)
    unread: dict[str, set[str]] = defaultdict(set)
    for snap in snaps:
        for row in snap.messages:
            if row.sender.rpartition(".")[0] == account:
                continue  # this account's own send, or its copy: nothing to read
            (read if row.read_at is not None else unread)[row.mid].add(snap.device)
    return [
        Divergence(
            "read_diverged",
            account,
            mid,
            f"read on {_names(read[mid])} but unread on {_names(unread[mid])}",
        )
        for mid in sorted(read)
        if unread.get(mid)
    ]


def _names(devices: set[str]) -> str:
    return ", ".join(sorted(devices))


def _statuses(account: str, snaps: Sequence[StoreSnapshot]) -> list[Divergence]:
    """Per message sent from this account: the highest shared status at each recipient device,
    as each holder of the message recorded it."""
    held: dict[str, set[str]] = defaultdict(set)  # mid -> devices of the account holding it
    for snap in snaps:
        for row in snap.messages:
            own = row.sender.rpartition(".")[0] == account
            sent = row.direction is Direction.OUT or row.recipient is not None
            if own and sent and row.recipient != account:  # a note to self has no receipts
                held[row.mid].add(snap.device)
    seen: dict[str, dict[str, dict[str, Status]]] = defaultdict(lambda: defaultdict(dict))
    for snap in snaps:
        for st in snap.statuses:
            if st.mid in held and snap.device in held[st.mid] and st.status in _SHARED:
                seen[st.mid][snap.device][st.device] = st.status
    out: list[Divergence] = []
    for mid in sorted(held):
        holders = sorted(held[mid])
        if len(holders) < 2:
            continue
        views = {h: seen[mid].get(h, {}) for h in holders}
        targets = sorted({t for v in views.values() for t in v})
        for target in targets:
            got = {h: views[h].get(target) for h in holders}
            if len(set(got.values())) > 1:
                shown = ", ".join(
                    f"{h}: {s.name.lower() if s else 'none'}" for h, s in sorted(got.items())
                )
                out.append(Divergence("status_diverged", account, mid, f"at {target}: {shown}"))
    return out


def in_step(view: RunView) -> Iterator[Violation]:
    """``read_diverged`` and ``status_diverged`` (see the module docstring)."""
    if not any(f.kind == IN_STEP_FAULT for f in view.record.faults):
        return
    accounts = {a: [x for x in d if x not in view.left] for a, d in view.accounts.items()}
    accounts = {a: d for a, d in accounts.items() if len(d) > 1}
    for d in divergence(view.stores, accounts):
        yield Violation(d.kind, d.mid, f"{d.detail} ({d.account}'s devices disagree)")


READ_RULES = (in_step,)
