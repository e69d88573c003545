"""The lab device process's options (:mod:`tidings.lab.device`, :class:`DeviceProc`): no
reconnect hints, client settings and the connection log reach the process's command line."""

from __future__ import annotations

from pathlib import Path

from tidings.lab.device import parse_args
from tidings.lab.procs import DeviceProc, ProcRegistry


def test_hints_settings_and_link_log_reach_the_device_argv(tmp_path: Path) -> None:
    with ProcRegistry() as registry:
        device = DeviceProc(
            tmp_path / "home",
            tmp_path / "events.jsonl",
            tmp_path / "plan.json",
            tmp_path / "logs",
            name="alice.1",
            hints=False,
            settings={"reconnect_max_seconds": "2"},
            link_log=tmp_path / "links" / "alice.1.jsonl",
            registry=registry,
        )
        argv = device.argv()
    args = parse_args(argv[argv.index("--home") :])
    assert args.no_hints and args.set == ["reconnect_max_seconds=2"]
    assert args.link_log == str(tmp_path / "links" / "alice.1.jsonl")


def test_by_default_hints_are_on_and_no_link_log(tmp_path: Path) -> None:
    device = DeviceProc(tmp_path, tmp_path / "e", tmp_path / "p", tmp_path, name="bob.1")
    args = parse_args(device.argv()[device.argv().index("--home") :])
    assert not args.no_hints and args.set is None and args.link_log is None
