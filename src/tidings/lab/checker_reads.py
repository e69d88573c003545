"""Read-state convergence (issue 13) on what every device stored: a message read on one device
of an account is read on all of them.

=================  =======================================================================
kind               a violation is
=================  =======================================================================
``read_diverged``  a message from another account, stored on several devices of one account,
                   is read (``read_at``) on some of them and unread on others, in a run whose
                   record has a ``read_sync`` fault line: the scenario gave the devices, all
                   running and connected, time to exchange their read receipts before it
=================  =======================================================================

Read state travels as READ receipts from a device to its own account (end-to-end encrypted,
through the outbox): a device that stops right after another one read a message may not have
fetched the receipt yet, so the rule is judged only where the scenario waited for it (the
``multi-device`` scenario waits, bounded, then writes ``read_sync``; the wait itself uses
:func:`divergence`). Registered in :data:`tidings.lab.checker.ALL_RULES`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from .checker_rules import Violation
from .checker_view import RunView, StoreSnapshot

__all__ = ["READ_FAULT", "READ_KINDS", "READ_RULES", "Divergence", "divergence", "read_diverged"]

#: The record's fault kind that asks for this rule (an instant: the convergence wait ended).
READ_FAULT = "read_sync"

READ_KINDS = ("read_diverged",)


@dataclass(frozen=True, slots=True)
class Divergence:
    """A message read on some devices of ``account`` and unread on others."""

    account: str
    mid: str
    read_on: tuple[str, ...]
    unread_on: tuple[str, ...]


def divergence(
    stores: Mapping[str, StoreSnapshot], accounts: Mapping[str, Sequence[str]]
) -> list[Divergence]:
    """Every message whose read state differs between the devices of one account that hold it
    (received from another account; copies of the account's own sends have nothing to read),
    in account and message order."""
    out: list[Divergence] = []
    for account in sorted(accounts):
        read: dict[str, set[str]] = defaultdict(set)
        unread: dict[str, set[str]] = defaultdict(set)
        for device in accounts[account]:
            snap = stores.get(device)
            if snap is None:
                continue
            for row in snap.messages:
                if row.sender.rpartition(".")[0] == account:
                    continue  # this account's own send, or its copy: nothing to read
                (read if row.read_at is not None else unread)[row.mid].add(device)
        for mid in sorted(read):
            if unread.get(mid):
                out.append(
                    Divergence(account, mid, tuple(sorted(read[mid])), tuple(sorted(unread[mid])))
                )
    return out


def read_diverged(view: RunView) -> Iterator[Violation]:
    """``read_diverged`` (see the module docstring)."""
    if not any(f.kind == READ_FAULT for f in view.record.faults):
        return
    accounts = {a: d for a, d in view.accounts.items() if len(d) > 1}
    for d in divergence(view.stores, accounts):
        yield Violation(
            "read_diverged",
            d.mid,
            f"read on {', '.join(d.read_on)} but unread on {', '.join(d.unread_on)}"
            f" ({d.account}'s devices disagree)",
        )


READ_RULES = (read_diverged,)
