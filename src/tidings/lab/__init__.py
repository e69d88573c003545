"""The fault lab: real processes, real faults, and a checker of the delivery contract (issue 4).

Modules: `netns` (network namespaces, veth pairs and nftables faults), `proxy` and
`proxy_thread` (a user-space TCP fault proxy), `procs` (server and device processes: kill -9,
SIGSTOP/SIGCONT, restart), `clock` (the lab clock), `workload` and `device` (the workload
driver and its per-device process), `labrun` (one run), `scenarios` (the named fault scripts),
`runner` (run, check, report), `record` (the lab's record), `checker` (the contract's
invariants), `report` (the summary table and the HTML report).
"""
