"""A lab device's groups (the ``group-chat`` scenario, :mod:`.scenarios_groups`).

A plan item whose ``to`` is ``@NAME`` is a group message: the device waits until its account
is a member of the group named ``NAME`` (it learns so from the client's
:class:`~tidings.client.GroupChanged`), then sends it with
:meth:`~tidings.client.Client.send_group`. The controller changes the group with commands on
stdin (answered by ``{"group_done": cmd}`` or an ``error`` line)::

    {"cmd": "group_create", "name": N, "members": [account, ...]}
    {"cmd": "group_add", "name": N, "members": [account, ...]}
    {"cmd": "group_remove", "name": N, "member": account}
    {"cmd": "group_leave", "name": N}

What the device sees of its groups goes to its group log, ``RUN/groups/acct.N.jsonl``
(:func:`group_log_path`), one JSON line each, with ``"t"`` (the lab clock) and ``"ev"``::

    {"ev": "group", "group": hex, "name", "members": [...], "member": bool, "by": "acct.N"}
    {"ev": "group_sent", "mid": hex, "group": hex, "members": [...]}

``group`` is each :class:`~tidings.client.GroupChanged` (this device's view of the group, as
of that moment); ``group_sent`` follows each group message's ``composed`` line and names the
member accounts the message was sealed for: the sender's view when ``send_group()`` sealed
it, read in the same step (no await in between). A ``composed`` line a kill -9 cut off is
written again at the next start without its ``group_sent`` line: that message's members are
unknown to the checker (:mod:`.checker_groups`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..client import Client, GroupChanged
from .device_log import device_name

__all__ = ["GROUPS_DIR", "DeviceGroups", "group_log_path", "group_name"]

#: The run directory's folder of group logs, ``groups/acct.N.jsonl``.
GROUPS_DIR = "groups"


def group_log_path(run_dir: Path, label: str) -> Path:
    """The group log of device ``label`` in ``run_dir``."""
    return run_dir / GROUPS_DIR / f"{label}.jsonl"


def group_name(to: str) -> str | None:
    """The group a plan item's ``to`` names (``@NAME``), or None for an account."""
    return to[1:] if to.startswith("@") else None


class DeviceGroups:
    """The group side of a lab device (see the module docstring).

    Args:
        client: the device's client.
        path: its group log (created on the first line).
        clock: the lab clock.
        emit: prints one JSON line for the controller.
    """

    def __init__(
        self,
        client: Client,
        path: Path,
        clock: Callable[[], float],
        emit: Callable[[dict[str, Any]], None],
    ) -> None:
        self.client = client
        self.path = path
        self.clock = clock
        self.emit = emit
        self._joined: dict[str, asyncio.Event] = {}

    def _write(self, ev: str, **fields: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut = self.path.exists() and not self.path.read_bytes().endswith(b"\n")
        with self.path.open("a") as f:  # rare lines: opened each time, one write() each
            f.write(("\n" if cut else "") + json.dumps({"t": self.clock(), "ev": ev, **fields}))
            f.write("\n")

    def _event(self, name: str) -> asyncio.Event:
        return self._joined.setdefault(name, asyncio.Event())

    def _group_id(self, name: str) -> bytes:
        for g in self.client.groups():
            if g.name == name:
                return g.group_id
        raise LookupError(f"this account is not in a group named {name!r}")

    def resume(self) -> None:
        """The groups this account is in already (an earlier start joined them)."""
        for g in self.client.groups():
            self._event(g.name).set()

    def on_changed(self, event: GroupChanged) -> None:
        self._write(
            "group",
            group=event.group_id.hex(),
            name=event.name,
            members=list(event.members),
            member=event.member,
            by=device_name(event.by),
        )
        joined = self._event(event.name)
        if event.member:
            joined.set()
        else:
            joined.clear()

    async def send(self, name: str, body: str) -> bytes:
        """Send ``body`` to the group ``name`` once this account is a member of it."""
        await self._event(name).wait()
        group_id = self._group_id(name)
        mid = await self.client.send_group(group_id, body)
        info = self.client.group_info(group_id)  # the view it was sealed with: no await since
        members = list(info.members) if info is not None else []
        self._write("group_sent", mid=mid.hex(), group=group_id.hex(), members=members)
        return mid

    async def command(self, cmd: dict[str, Any]) -> None:
        """Run one ``group_*`` command from the controller (module docstring)."""
        kind, name = cmd.get("cmd"), str(cmd.get("name", ""))
        c = self.client
        try:
            if kind == "group_create":
                await c.create_group(name, list(cmd.get("members", [])))
            elif kind == "group_add":
                await c.add_members(self._group_id(name), list(cmd.get("members", [])))
            elif kind == "group_remove":
                await c.remove_member(self._group_id(name), str(cmd.get("member", "")))
            elif kind == "group_leave":
                await c.leave_group(self._group_id(name))
            else:
                raise LookupError(f"unknown group command {kind!r}")
        except Exception as exc:  # the controller reads the reason; the device goes on
            self.emit({"error": f"{kind} failed: {exc}"})
            return
        self.emit({"group_done": kind})
