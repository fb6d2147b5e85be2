"""Failover drills on a running lab: break something real, measure what clients saw,
check what was kept, put the cluster back to healthy. ``python -m lab drill --help``.

One module per job:

- scenarios.py  the drills themselves (what each breaks and waits for), SCENARIOS
- faults.py     process faults: kill, freeze, thaw a node
- netcut.py     the network fault: cut a node off (nftables on its cgroup)
- load.py       what runs during a drill: writers, the dual-primary probe, the monitor
- events.py     what the load records (Attempt and its outcomes)
- detect.py     pure verdicts on a recorded timeline: RTO, lost writes, two primaries
- report.py     the table, JSON and PNG timeline
- timing.py     Patroni's ttl / loop_wait / retry_timeout, read or set at runtime
- run.py        run_drill / run_drills / the ``drill`` command
"""
