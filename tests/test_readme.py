"""The README's commands, run as a newcomer runs them: parsed from its ```sh blocks and run, in
order, from a scratch working directory, with the default and relative options shown there.

What differs from the README's text, and why (nothing else does):

* ``--port 7400`` becomes ``--port 0`` (the relay's URL is read from its first line) and the
  metrics port comes from ``TIDINGS_METRICS_PORT``: other relays may run on this machine.
* ``~/x`` becomes ``user-home/x``: a relative path to where the shell's ``~`` leads (``HOME`` is
  that directory), so relative homes are exercised and no user file can be reached.
* What the README elides is filled from what an earlier command printed: ``ws://…`` the relay's
  URL, ``CODE`` the link code, ``5e0c…`` the message id ``send`` printed, ``"48391 05523 …"``
  the safety number ``safety-number`` showed.
* ``send --wait delivered`` while some device of the recipient is offline gets ``--timeout 2``
  and must exit 3 (documented: timed out waiting, the message stays queued), and the message
  must then reach each of those devices when it listens; afterwards the same command, with
  every device of the recipient listening, must exit 0.
* ``lab run SCENARIO --seed 7 --out ./lab-runs/x`` gets ``--quick`` (full length takes
  minutes); ``sudo`` is dropped (without root the lab skips the kernel scenarios itself).

Long-running commands (``server``, ``listen``) run in the background, as in a terminal of their
own, and are stopped at the end with Ctrl-C (SIGINT): they must exit 0 without a traceback. A
command that connects as a device (``send``, ``link-code``) first stops that device's listener:
one process per device. Nothing sleeps: output is followed line by line with deadlines.

``lab run all --quick`` is the suite's only run of the quick scenarios: each scenario's result is
checked here, as ``tests/lab/test_scenarios.py`` did before (kernel ones need root).
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tidings.api.client import ApiClient
from tidings.api.server import SOCKET_NAME
from tidings.cli.main import parser
from tidings.client.connect import DB_NAME
from tidings.lab import runner
from tidings.lab.checker import check, format_violations
from tidings.lab.netns import kernel_faults_available
from tidings.lab.record import RECORD_FILE, Fault, Settled
from tidings.lab.record_read import load_run
from tidings.lab.scenarios import SCENARIOS

from .readme_shell import WAIT, Background, Command, Done, Shell, readme_commands

_KERNEL = kernel_faults_available()

#: Programs other than ``tidings`` the README shows (installing, the gate): not run here.
OTHER_PROGRAMS = {"pip", "make"}

#: The lab's run of every quick scenario: the whole of it, with room to spare.
LAB_TIMEOUT = 900.0

HEX_ID = re.compile(r"\b[0-9a-f]{32}\b")
LINK_CODE = re.compile(r"\b[0-9a-f]{16,}\b")
URL = re.compile(r"ws://\S+/v1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _lab_runs(command: Command) -> bool:
    return command.subcommand == "lab run"


def _lab(command: Command) -> bool:
    return command.args[:1] == ("lab",)


def _containing(text: str) -> Callable[[str], bool]:
    return lambda line: text in line


def _option(args: tuple[str, ...] | list[str], name: str) -> str:
    return args[args.index(name) + 1]


# ------------------------------------------------------------------------ the commands themselves


def test_every_readme_command_parses_and_is_run_by_this_module() -> None:
    """Fast: a renamed flag or subcommand in the README (or the CLI) fails here first."""
    commands = readme_commands()
    shown = {c.subcommand for c in commands if c.program == "tidings"}
    assert {"server", "register", "link", "send", "listen", "trace", "safety-number"} <= shown
    assert {"demo", "lab list", "lab run"} <= shown
    for c in commands:
        assert c.program in {"tidings", *OTHER_PROGRAMS}, f"unknown program in: {c.line}"
        if c.program != "tidings":
            continue
        try:
            parser().parse_args(list(c.args))
        except SystemExit as exc:
            raise AssertionError(f"README command does not parse: {c.line}") from exc
        assert _lab(c) or c.subcommand in Usage.HANDLERS, f"not run by this module: {c.line}"
        assert c.subcommand in ("lab list", "lab run") or not _lab(c), c.line


# ------------------------------------------------------------------------ the Usage section


@dataclass
class Sent:
    mid: str
    to: str
    text: str
    home: str
    timed_out: bool


class Usage:
    """Runs the README's non-lab commands in order, keeping what they printed."""

    HANDLERS: dict[str, Callable[[Usage, list[str]], None]]

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.url = ""
        self.server: Background | None = None
        self.accounts: dict[str, str] = {}  #: home → account
        self.device_ids: dict[str, int] = {}  #: home → its device id
        self.listeners: dict[str, Background] = {}  #: home → its listen process
        self.code = ""
        self.sent: list[Sent] = []
        self.numbers: dict[str, list[str]] = {}  #: contact → the 12 groups shown
        self.ran: list[str] = []

    def do(self, args: list[str]) -> None:
        handler = self.HANDLERS.get(args[0])
        assert handler is not None, f"README shows `tidings {args[0]}`: teach this test to run it"
        handler(self, [self.shell.expand(a) for a in args])
        self.ran.append(" ".join(args))

    def ok(self, args: list[str], code: int = 0, timeout: float = WAIT) -> Done:
        done = self.shell.run(args, timeout)
        assert done.code == code, f"tidings {' '.join(args)}: expected exit {code}, {done}"
        return done

    def stop_listener(self, home: str) -> None:
        if home in self.listeners:
            proc = self.listeners.pop(home)
            assert proc.interrupt() == 0, f"{proc.name}: {proc.stderr()}"
            assert "Traceback" not in proc.stderr(), proc.stderr()

    def demo(self, args: list[str]) -> None:
        self.ok(args, timeout=2 * WAIT)

    def server_(self, args: list[str]) -> None:
        args[args.index("--port") + 1] = "0"
        self.server = self.shell.start("server", args)
        found = URL.search(self.server.wait_line(lambda x: URL.search(x) is not None))
        assert found is not None
        self.url = found[0]
        assert (self.shell.cwd / _option(args, "--data-dir") / "server.key").is_file()

    def register(self, args: list[str]) -> None:
        args[args.index("--server") + 1] = self.url
        if "--link-code" in args:
            assert _option(args, "--link-code") == "CODE", args
            args[args.index("--link-code") + 1] = self.code
        out = self.ok(args).out
        home = _option(args, "--home")
        assert (self.shell.cwd / home / DB_NAME).is_file(), f"no device store in {home}"
        self.accounts[home] = args[1]
        self.device_ids[home] = int(out.split(f"registered {args[1]}.", 1)[1].split()[0])

    def link_code(self, args: list[str]) -> None:
        self.stop_listener(_option(args, "--home"))
        found = LINK_CODE.search(self.ok(args).out)
        assert found is not None, "link-code printed no code"
        self.code = found[0]

    def send(self, args: list[str]) -> None:
        to, text, home = args[1], args[2], _option(args, "--home")
        self.stop_listener(home)
        devices = self.devices_of(to)
        online = all(h in self.listeners for h in devices)
        wait = _option(args, "--wait") if "--wait" in args else "sent"
        late = wait in ("delivered", "read") and not online
        done = self.ok([*args, "--timeout", "2"] if late else args, 3 if late else 0)
        found = HEX_ID.search(done.out)
        assert found is not None, f"send printed no message id: {done}"
        self.sent.append(Sent(found[0], to, text, home, late))
        for h in devices:
            if h in self.listeners:
                self.expect_messages(h)

    def listen(self, args: list[str]) -> None:
        home = _option(args, "--home")
        self.listeners[home] = self.shell.start(f"listen-{len(self.ran)}", args)
        self.expect_messages(home)
        mine = [s for s in self.sent if s.home == home]
        if mine and mine[-1].timed_out:  # its receipts came after `send` gave up: shown now
            mid = mine[-1].mid
            self.listeners[home].wait_line(lambda x: mid[:8] in x and "delivered" in x)

    def trace(self, args: list[str]) -> None:
        home = _option(args, "--home")
        mid = next(s.mid for s in reversed(self.sent) if s.home == home)
        assert "…" in args[1], args
        out = self.ok([args[0], mid, *args[2:]]).out
        assert mid in out and "composed" in out and "sent" in out, out
        assert any(p.startswith("delivered:") for p in out.split()), out

    def safety_number(self, args: list[str]) -> None:
        contact = args[1]
        if "--verify" in args:
            assert "…" in _option(args, "--verify"), args
            args[args.index("--verify") + 1] = " ".join(self.numbers[contact])
            self.ok(args)
            return
        groups = re.findall(r"\b\d{5}\b", self.ok(args).out)
        assert len(groups) >= 12, groups
        self.numbers[contact] = groups[:12]

    def daemon(self, args: list[str]) -> None:
        """In the background as in a terminal of its own; the API is used as the README's
        socat line does (a send and the status), then Ctrl-C: exit 0, no traceback, no socket."""
        home = _option(args, "--home")
        self.stop_listener(home)
        daemon = self.shell.start(f"daemon-{len(self.ran)}", args)
        daemon.wait_line(lambda x: "API at" in x)
        daemon.wait_line(lambda x: x.startswith("= connected"))

        async def use() -> tuple[dict[str, Any], dict[str, Any]]:
            api = await ApiClient.open(self.shell.cwd / home)
            try:
                await api.call("subscribe")
                sent = await api.call("send", to="bob", text="hi via the api")
                while True:  # ✓ before Ctrl-C, or it would wait in alice's outbox
                    e = await api.next_event(WAIT)
                    if e["event"] == "status" and e["message_id"] == sent["message_id"]:
                        break
                return sent, await api.call("status")
            finally:
                await api.close()

        sent, status = asyncio.run(asyncio.wait_for(use(), WAIT))
        assert status["connected"] is True and status["account"] == self.accounts[home]
        self.sent.append(Sent(sent["message_id"], "bob", "hi via the api", home, True))
        assert daemon.interrupt() == 0, daemon.stderr()
        assert "Traceback" not in daemon.stderr(), daemon.stderr()
        assert not (self.shell.cwd / home / SOCKET_NAME).exists()

    def web(self, args: list[str]) -> None:
        """In the background: the printed URL opens the page (token → cookie → the app), the
        app's API answers with the device's status, and Ctrl-C stops it cleanly."""
        home = _option(args, "--home")
        self.stop_listener(home)
        web = self.shell.start(f"web-{len(self.ran)}", args)
        line = web.wait_line(lambda x: "tidings web: open " in x)
        url = line.split("tidings web: open ", 1)[1].strip()
        base = url.split("/?", 1)[0]

        async def use() -> tuple[str, dict[str, Any]]:
            jar = aiohttp.CookieJar(unsafe=True)  # a cookie of an IP address
            async with aiohttp.ClientSession(cookie_jar=jar) as s:
                async with s.get(url) as page:
                    assert page.status == 200 and str(page.url) == base + "/"
                    html = await page.text()
                headers = {"Origin": base}
                async with s.post(f"{base}/api/status", json={}, headers=headers) as r:
                    return html, (await r.json())["result"]

        html, status = asyncio.run(asyncio.wait_for(use(), WAIT))
        assert "<title>tidings</title>" in html
        assert status["account"] == self.accounts[home]
        assert web.interrupt() == 0, web.stderr()
        assert "Traceback" not in web.stderr(), web.stderr()

    def conversations(self, args: list[str]) -> None:
        home = _option(args, "--home")
        out = self.ok(args).out
        assert any(s.home == home for s in self.sent) and ":" in out, out

    def history(self, args: list[str]) -> None:
        home, contact = _option(args, "--home"), args[1]
        out = self.ok(args).out
        for s in self.sent:
            if s.home == home and s.to == contact:
                assert s.text in out, (s.text, out)

    def search(self, args: list[str]) -> None:
        home, word = _option(args, "--home"), args[1]
        out = self.ok(args).out
        found = [s.text for s in self.sent if s.home == home and word in s.text.split()]
        assert found, f"the README searches {home} for {word!r}, which it never sent"
        for text in found:
            assert text in out, (text, out)

    def timer(self, args: list[str]) -> None:
        """Set (the home's listen stopped first, as the README says), then shown beside a
        listen; the contact's listener prints the setting."""
        home, contact = _option(args, "--home"), args[1]
        setting = len(args) > 2 and not args[2].startswith("--")
        if setting:
            self.stop_listener(home)
        out = self.ok(args).out
        assert out.startswith("disappearing messages in "), out
        if setting:
            assert f": {args[2]} (set by {self.accounts[home]}." in out, out
            for other in self.devices_of(contact):
                if other in self.listeners:
                    self.listeners[other].wait_line(_containing("set disappearing messages"))
        else:
            assert "(set by " in out, out  # the README sets it before it shows it

    def devices(self, args: list[str]) -> None:
        """Listed as the relay has them; ``--unlink N`` removes that device of the home's
        account (the README unlinks the laptop it linked): it is no device of it any more."""
        home = _option(args, "--home")
        self.stop_listener(home)
        account = self.accounts[home]
        out = self.ok(args).out
        assert f"{account}.1 " in out and "this device" in out, out
        if "--unlink" in args:
            n = _option(args, "--unlink")
            assert f"unlinked {account}.{n}" in out, out
            gone = [h for h in self.devices_of(account) if self.device_ids.get(h) == int(n)]
            assert gone, f"the README unlinks {account}.{n}, which it never registered"
            for h in gone:
                self.accounts.pop(h)
            assert f"{account}.{n} " not in out.split("\n", 1)[1], out

    def devices_of(self, account: str) -> list[str]:
        return [h for h, a in self.accounts.items() if a == account]

    def expect_messages(self, home: str) -> None:
        """Every message sent so far to ``home``'s account is shown by its listener."""
        assert home in self.accounts, f"the README uses {home}, where no device was registered"
        account = self.accounts[home]
        texts = [s.text for s in self.sent if s.to == account]
        for text in set(texts):
            self.listeners[home].wait_line(_containing(text), texts.count(text))

    def finish(self) -> None:
        """Ctrl-C every listener, then the relay: each exits 0, without a traceback."""
        for home in list(self.listeners):
            self.stop_listener(home)
        assert self.server is not None
        assert self.server.interrupt() == 0, self.server.stderr()
        assert "Traceback" not in self.server.stderr(), self.server.stderr()


Usage.HANDLERS = {
    "demo": Usage.demo,
    "server": Usage.server_,
    "register": Usage.register,
    "link-code": Usage.link_code,
    "link": Usage.link_code,
    "send": Usage.send,
    "listen": Usage.listen,
    "trace": Usage.trace,
    "safety-number": Usage.safety_number,
    "daemon": Usage.daemon,
    "web": Usage.web,
    "conversations": Usage.conversations,
    "history": Usage.history,
    "search": Usage.search,
    "devices": Usage.devices,
    "timer": Usage.timer,
}


@pytest.mark.proc
@pytest.mark.slow
def test_readme_usage_runs_as_written_from_a_scratch_directory(tmp_path: Path) -> None:
    commands = [c for c in readme_commands() if c.program == "tidings" and not _lab(c)]
    shell = Shell(tmp_path, TIDINGS_METRICS_PORT=str(_free_port()))
    usage = Usage(shell)
    try:
        for c in commands:
            usage.do(list(c.args))
        # The README's send again, now with every device of the recipient listening
        # (`--wait delivered` waits for all of them): it must exit 0.
        last = next(c for c in reversed(commands) if c.subcommand == "send")
        for home in usage.devices_of(last.args[1]):
            if home not in usage.listeners:
                usage.do(["listen", "--home", home])
        usage.do(list(last.args))
        usage.finish()
    finally:
        shell.close()
    assert usage.ran[: len(commands)] == [" ".join(c.args) for c in commands]
    assert (tmp_path / "tidings-data" / "relay.db").is_file()  # the default, relative data dir


# ------------------------------------------------------------------------ the fault lab


def _scenario_params() -> list[object]:
    return [
        pytest.param(
            n,
            marks=pytest.mark.skipif(  # kernel scenarios and disk-full's mounts need root
                runner.available(SCENARIOS[n]) is not None,
                reason=runner.available(SCENARIOS[n]) or "",
            ),
        )
        for n in SCENARIOS
    ]


def _readme_lab_run(pred: Callable[[Command], bool]) -> list[Command]:
    found = [c for c in readme_commands() if _lab_runs(c) and pred(c)]
    assert found, "the README shows no such `tidings lab run`"
    return found


@dataclass(frozen=True)
class LabAll:
    done: Done
    out_dir: Path


@pytest.fixture(scope="module")
def lab_all(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabAll]:
    """The README's ``tidings lab run all --quick``, once, with its default ``--out``."""
    (command,) = _readme_lab_run(lambda c: c.args[2] == "all")
    assert "--out" not in command.args and "--quick" in command.args
    cwd = tmp_path_factory.mktemp("lab-all")
    shell = Shell(cwd)
    done = shell.run(list(command.args), timeout=LAB_TIMEOUT)
    runs = sorted((cwd / "lab-runs").iterdir()) if (cwd / "lab-runs").is_dir() else []
    assert len(runs) == 1, f"one run directory under ./lab-runs expected: {runs}\n{done}"
    yield LabAll(done, runs[0])


@pytest.mark.proc
@pytest.mark.slow
def test_readme_lab_run_all_quick_passes_with_its_default_out(lab_all: LabAll) -> None:
    done = lab_all.done
    assert done.code == 0, done
    assert f"report: {lab_all.out_dir / runner.REPORT_FILE}" in done.out
    assert (lab_all.out_dir / runner.REPORT_FILE).read_text().startswith("<!DOCTYPE html>")
    kernel = [n for n, s in SCENARIOS.items() if s.kernel]
    assert ("skipped (unavailable here)" in done.out) == (_KERNEL is not None and bool(kernel))


@pytest.mark.proc
@pytest.mark.slow
@pytest.mark.parametrize("name", _scenario_params())
def test_quick_scenario_passes_the_checker(lab_all: LabAll, name: str) -> None:
    run_dir = lab_all.out_dir / name
    row = next((x for x in lab_all.done.out.splitlines() if x.startswith(name + " ")), None)
    assert row is not None and row.rstrip().endswith("PASS"), lab_all.done
    result = check(run_dir)  # again, on what the CLI's run left behind
    assert result.ok, format_violations(result)
    c = result.counts
    assert c.sent > 0 and c.acked == c.sent
    assert (c.lost, c.duplicated, c.reordered) == (0, 0, 0)
    record = load_run(run_dir)
    assert not record.errors
    assert record.faults, "every scenario injects at least one fault"
    assert all(isinstance(f, Fault) and f.start <= (f.end or f.start) for f in record.faults)
    assert isinstance(record.settled, Settled) and result.settled
    assert (run_dir / runner.REPORT_FILE).read_text().startswith("<!DOCTYPE html>")
    if name == "offline-for-days":
        assert c.expired > 0  # what passed the retention was reported ✗ to its sender


@pytest.mark.proc
@pytest.mark.slow
def test_readme_lab_run_of_one_scenario_with_a_relative_out(tmp_path: Path) -> None:
    for command in _readme_lab_run(lambda c: c.args[2] != "all"):
        args = list(command.args)
        assert _option(args, "--out").startswith("./"), command.line
        name, out = args[2], tmp_path / _option(args, "--out")
        done = Shell(tmp_path).run([*args, "--quick"], timeout=LAB_TIMEOUT)
        assert done.code == 0, done
        assert name in done.out and "PASS" in done.out, done
        assert f"report: {out.resolve() / runner.REPORT_FILE}" in done.out
        assert (out / runner.REPORT_FILE).is_file()
        assert (out / name / RECORD_FILE).is_file()
        record = load_run(out / name)
        assert not record.errors and record.run is not None
        assert record.run.seed == int(_option(args, "--seed"))


@pytest.mark.proc
@pytest.mark.slow
def test_readme_lab_list(tmp_path: Path) -> None:
    (command,) = [c for c in readme_commands() if c.subcommand == "lab list"]
    done = Shell(tmp_path).run(list(command.args))
    assert done.code == 0, done
    for name in SCENARIOS:
        assert any(x.startswith(name + " ") for x in done.out.splitlines()), done
