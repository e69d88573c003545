"""The README's shell commands, and a shell to run them in a scratch working directory.

:func:`readme_commands` extracts every command of the README's ```sh blocks (``#`` comments and
the output lines shown as comments dropped, ``a && b`` split, ``sudo`` noted and dropped).
:class:`Shell` runs ``tidings`` as a newcomer would: the installed console script, from a
scratch working directory, relative paths as given, ``HOME`` moved into that directory and no
``TIDINGS_*`` variable inherited; :class:`Background` follows a long-running command (``server``,
``listen``) line by line with deadlines (select, never sleep) and stops it with a real signal.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["README", "WAIT", "Background", "Command", "Done", "Shell", "readme_commands"]

README = Path(__file__).resolve().parent.parent / "README.md"

#: Deadline of one wait or one command (seconds); a healthy run needs a fraction of it.
WAIT = 30.0

#: The directory, relative to the shell's working directory, that ``~`` stands for.
USER_HOME = "user-home"

_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class Command:
    """One command of the README: its program, its arguments, and the line it came from."""

    program: str
    args: tuple[str, ...]
    line: str
    sudo: bool = False

    @property
    def subcommand(self) -> str:
        """``lab run``, ``lab list`` or the first argument (``send``)."""
        if self.args[:1] == ("lab",):
            return " ".join(self.args[:2])
        return self.args[0] if self.args else ""


def readme_commands(path: Path = README) -> list[Command]:
    """Every command of the README's ```sh blocks, in order."""
    commands: list[Command] = []
    for block in _SH_BLOCK.findall(path.read_text()):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                part, words = words[:cut], words[cut + 1 :]
                sudo = part[:1] == ["sudo"]
                part = part[1:] if sudo else part
                if part:
                    commands.append(Command(part[0], tuple(part[1:]), line.strip(), sudo))
    return commands


def tidings_argv() -> list[str]:
    """The installed ``tidings`` script next to this interpreter (as the README runs it), or
    ``python -m tidings`` where there is none."""
    script = Path(sys.executable).parent / "tidings"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tidings"]


@dataclass(frozen=True, slots=True)
class Done:
    """A finished command."""

    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err[-3000:]}"


class Shell:
    """A scratch working directory to run ``tidings`` in (see the module docstring)."""

    def __init__(self, cwd: Path, **env: str) -> None:
        self.cwd = cwd
        self.home = cwd / USER_HOME
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        self.env.update(HOME=str(self.home), **env)
        self.started: list[Background] = []

    def expand(self, arg: str) -> str:
        """``~/x`` as a path relative to the working directory (``user-home/x``), which is where
        the shell's ``~`` would put it: ``HOME`` is that directory."""
        return f"{USER_HOME}/{arg[2:]}" if arg.startswith("~/") else arg

    def run(self, args: Sequence[str], timeout: float = WAIT) -> Done:
        """Run ``tidings ARGS`` to completion."""
        done = subprocess.run(
            [*tidings_argv(), *args],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Done(done.returncode, done.stdout, done.stderr)

    def start(self, name: str, args: Sequence[str]) -> Background:
        """Start ``tidings ARGS`` in the background (killed by :meth:`close` at the latest)."""
        proc = Background(name, [*tidings_argv(), *args], self.cwd, self.env)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        """Kill whatever is still running (a failed test's leftovers)."""
        for proc in self.started:
            proc.kill()


class Background:
    """A long-running command whose stdout is followed line by line."""

    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        self.stderr_path = cwd / f"{name}.stderr"
        with self.stderr_path.open("wb") as err:
            self.popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
            )
        assert self.popen.stdout is not None
        self._fd = self.popen.stdout.fileno()
        self._buf = b""
        self.lines: list[str] = []
        self.eof = False

    def _read(self, left: float) -> None:
        if not select.select([self._fd], [], [], max(0.0, left))[0]:
            return
        data = os.read(self._fd, 1 << 16)
        if not data:
            self.eof = True
            data = b"\n" if self._buf else b""
        *complete, self._buf = (self._buf + data).split(b"\n")
        self.lines += [x.decode(errors="replace") for x in complete]

    def wait_line(self, pred: Callable[[str], bool], count: int = 1, timeout: float = WAIT) -> str:
        """The ``count``-th stdout line (already read or still to come) matching ``pred``."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.lines if pred(line)]
            if len(found) >= count:
                return found[count - 1]
            left = deadline - time.monotonic()
            if self.eof or left <= 0:
                raise AssertionError(
                    f"{self.name}: {count} matching line(s) expected (exit {self.popen.poll()}); "
                    f"stdout: {self.lines}\nstderr: {self.stderr()}"
                )
            self._read(left)

    def interrupt(self, sig: signal.Signals = signal.SIGINT, timeout: float = WAIT) -> int:
        """Send ``sig`` (Ctrl-C by default), read stdout to its end and return the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name} did not exit on {sig.name}: {self.stderr()}")
            self._read(left)
        return self.popen.wait(max(0.1, deadline - time.monotonic()))

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
