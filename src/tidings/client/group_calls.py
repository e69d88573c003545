"""The client's group calls: create a group, change its members and name, send to it, read it.

:class:`GroupCalls` is a part of :class:`~tidings.client.Client` (a base class, as
:class:`~tidings.client.own_devices.OwnDevices`): the decisions are the
:class:`~tidings.client.groups.GroupRuntime`'s; these methods close the open store batch, let
it commit the step, and hand what it queued to the outbox. Every call is durable on return.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..delivery import Message, Status
from ..delivery.content_groups import group_conversation
from ..delivery.groups import GroupError, GroupState, OpKind
from ..delivery.msgids import new_message_id
from ..errors import StoreUnavailable
from ..refs import DeviceRef
from ..wire import check_account
from .events import StorageFailed
from .group_transport import copy_id
from .groups import GroupRuntime
from .outbox import Outbox
from .store import ClientStore
from .store._groups import GroupWrites

__all__ = [
    "GroupCalls",
    "GroupInfo",
    "group_rollup",
    "group_statuses",
    "rollup_text",
    "stored_group_rollup",
]


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A group as this device knows it."""

    group_id: bytes
    name: str
    members: tuple[str, ...]
    admins: tuple[str, ...]
    conversation: str

    @classmethod
    def of(cls, state: GroupState) -> GroupInfo:
        return cls(
            state.group_id,
            state.name,
            tuple(sorted(state.members)),
            tuple(sorted(state.admins)),
            group_conversation(state.group_id),
        )


def group_rollup(statuses: dict[DeviceRef, Status], devices: Iterable[DeviceRef]) -> dict[str, int]:
    """A group message's statuses as people read them: of the member ``devices`` it was for,
    how many the relay stored it for (✓), have it (✓✓ or read) and displayed it, per device
    and per member account (an account counts once any of its devices did): "delivered to 4
    of 5", "read by 3"."""
    devices = list(devices)
    have = {Status.DELIVERED, Status.READ}
    stored = {Status.SENT, *have}
    accounts = sorted({d.account for d in devices})
    return {
        "devices": len(devices),
        "sent_devices": sum(statuses.get(d) in stored for d in devices),
        "delivered_devices": sum(statuses.get(d) in have for d in devices),
        "read_devices": sum(statuses.get(d) is Status.READ for d in devices),
        "members": len(accounts),
        "delivered": sum(
            any(statuses.get(d) in have for d in devices if d.account == a) for a in accounts
        ),
        "read": sum(
            any(statuses.get(d) is Status.READ for d in devices if d.account == a) for a in accounts
        ),
    }


def rollup_text(rollup: dict[str, int]) -> str:
    """``delivered to 4 of 5, read by 3`` (member accounts; devices when they differ)."""
    text = f"delivered to {rollup['delivered']} of {rollup['members']}"
    if rollup["devices"] != rollup["members"]:
        text += f" ({rollup['delivered_devices']} of {rollup['devices']} devices)"
    return text + f", read by {rollup['read']}"


def group_statuses(
    store: ClientStore, message_id: bytes, accounts: Iterable[str]
) -> dict[DeviceRef, Status]:
    """A sent group message's status at each device: its receipts, and the ✓ of each
    account's copy (the pairwise fallback's, under :func:`copy_id`), the furthest of both."""
    statuses = {d: s.status for d, s in store.statuses(message_id).items()}
    for account in set(accounts):
        for d, s in store.statuses(copy_id(message_id, account)).items():
            if d not in statuses or s.status > statuses[d]:
                statuses[d] = s.status
    return statuses


def stored_group_rollup(store: ClientStore, message_id: bytes) -> dict[str, int] | None:
    """:func:`group_rollup` from the store alone (no running client): over the devices the
    relay stored a copy for or that sent a receipt, of the group's member accounts now."""
    m = store.message(message_id)
    if m is None or m.recipient is None or not m.recipient.startswith("group:"):
        return None
    me = store.get_identity()
    group_id = bytes.fromhex(m.recipient.removeprefix("group:"))
    accounts = {a for a, _ in store.group_members(group_id)} - {me.account if me else ""}
    statuses = group_statuses(store, message_id, accounts)
    return group_rollup(statuses, sorted(d for d in statuses if d.account in accounts))


class GroupCalls:
    """The group calls of :class:`~tidings.client.Client` (see the module docstring)."""

    me: DeviceRef
    store: ClientStore
    groups_runtime: GroupRuntime
    _outbox: Outbox
    _clock: Callable[[], float]
    storage_failed: StorageFailed | None

    if TYPE_CHECKING:  # defined by Client

        def _end_batch(self) -> None: ...

        def _share_profile_key(self, to: str) -> None: ...

    def _queued(self, ids: list[bytes]) -> None:
        try:
            self._outbox.add_queued(ids)
        except StoreUnavailable:
            pass  # committed; the client stops (StorageFailed)

    def _ready(self) -> None:
        if self.storage_failed is not None:
            raise StoreUnavailable(self.storage_failed.state, self.storage_failed.message)
        self._end_batch()

    async def create_group(self, name: str, members: Iterable[str]) -> bytes:
        """Create a group of this account (its admin) and ``members``; returns its id.

        Raises:
            FrameError: a member is not a valid account name.
            GroupError: the name is too long, or too many members.
            StoreUnavailable: the store cannot write (nothing changed).
        """
        accounts = list(members)
        for account in accounts:
            check_account(account)
        self._ready()
        group_id, ids = self.groups_runtime.create(name, accounts, self._clock())
        self._queued(ids)
        return group_id

    async def _change(
        self, group_id: bytes, kind: OpKind, targets: Iterable[str] = (), name: str = ""
    ) -> None:
        self._ready()
        self._queued(self.groups_runtime.change(group_id, kind, targets, name, self._clock()))

    async def add_members(self, group_id: bytes, accounts: Iterable[str]) -> None:
        """Add accounts to a group (an admin's change); they get its history of changes.

        Raises:
            GroupError: no such group, not an admin, or nothing to add; nothing changed.
        """
        targets = list(accounts)
        for account in targets:
            check_account(account)
        await self._change(group_id, OpKind.ADD, targets)

    async def remove_member(self, group_id: bytes, account: str) -> None:
        """Remove a member (an admin's change); this device's sender key is rotated, so the
        removed account cannot read what follows.

        Raises:
            GroupError: as :meth:`add_members`.
        """
        check_account(account)
        state = self.groups_runtime.state(group_id)
        if state is not None and account not in state.members:
            raise GroupError(f"{account} is not a member")
        await self._change(group_id, OpKind.REMOVE, [account])

    async def promote_member(self, group_id: bytes, account: str) -> None:
        """Make a member an admin (an admin's change).

        Raises:
            GroupError: as :meth:`add_members`.
        """
        check_account(account)
        await self._change(group_id, OpKind.PROMOTE, [account])

    async def leave_group(self, group_id: bytes) -> None:
        """Leave a group (the other members are told; nothing of it is sent here after).

        Raises:
            GroupError: no such group, or not a member.
        """
        await self._change(group_id, OpKind.LEAVE)

    async def rename_group(self, group_id: bytes, name: str) -> None:
        """Rename a group (any member may).

        Raises:
            GroupError: no such group, not a member, or the name is too long.
        """
        await self._change(group_id, OpKind.RENAME, name=name)

    async def send_group(self, group_id: bytes, body: bytes | str) -> bytes:
        """Send a message to a group; returns its id once it is durable in the outbox.

        Raises:
            GroupError: no such group, or this account is not a member.
            ContentError: the body is too large.
            OutboxFullError: the outbox is full.
            StoreUnavailable: the store cannot write (nothing is queued).
        """
        runtime = self.groups_runtime
        state = runtime.state(group_id)
        if state is None or self.me.account not in state.members:
            raise GroupError("not a member of this group")
        data = body.encode() if isinstance(body, str) else body
        self._ready()
        now = self._clock()
        message_id = new_message_id(now, os.urandom)
        queued: list[bytes] = []

        def seal(message: Message) -> GroupWrites:
            writes = runtime.seal(group_id, message_id, message, now)
            queued.extend(r.message_id for r in writes.requests)
            return writes

        try:
            self.store.compose_group(message_id, group_conversation(group_id), data, now, seal)
        except BaseException:
            runtime.reload()  # the sender key ran ahead of the store
            raise
        self._queued(queued)
        # Members given no profile key of ours yet get it (pairwise, after the message), so
        # that what they send the group can be sealed to us (their sends are sealed only to
        # accounts whose key they hold): members who only ever write in the group would
        # otherwise never seal.
        try:
            for account in sorted(state.members - {self.me.account}):
                self._share_profile_key(account)
        except StoreUnavailable:
            pass  # the message is queued (committed); the client stops (StorageFailed)
        return message_id

    def groups(self) -> list[GroupInfo]:
        """The groups this account is a member of, by name."""
        return [GroupInfo.of(s) for s in self.groups_runtime.joined()]

    def group_info(self, group_id: bytes) -> GroupInfo | None:
        """A group this device knows (also one this account left), or None."""
        state = self.groups_runtime.state(group_id)
        return GroupInfo.of(state) if state is not None and state.exists else None

    def group_status(self, message_id: bytes) -> dict[str, int] | None:
        """A group message's roll-up (:func:`group_rollup`) over the current member devices,
        or None if this device sent no group message with this id."""
        m = self.store.message(message_id)
        if m is None or m.sender != self.me or m.recipient is None:
            return None
        group_id = bytes.fromhex(m.recipient.removeprefix("group:"))
        devices = [
            d for d in self.groups_runtime.member_devices(group_id) if d.account != self.me.account
        ]
        statuses = group_statuses(self.store, message_id, {d.account for d in devices})
        return group_rollup(statuses, devices)
