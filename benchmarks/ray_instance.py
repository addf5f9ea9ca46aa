"""The private local Ray instance with and without its dashboard (the state API Ray Train's
PlacementGroupCleaner needs), side by side in one run: start time, resident memory of the instance's
processes, and whether Ray's state API answers. Each start is a fresh process, alternating variants.

    .venv/bin/python benchmarks/ray_instance.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

PROBE = r"""
import json, logging, os, sys, time
import ray
from cnnsweep.distributed.cluster import start_ray, stop_ray
dashboard = sys.argv[1] == "dashboard"
t = time.perf_counter()
if dashboard:
    start_ray(num_cpus=2)
else:
    ray.init(address="local", include_dashboard=False, num_cpus=2, _node_ip_address="127.0.0.1",
             logging_level=logging.WARNING)
seconds = time.perf_counter() - t
time.sleep(5)  # let the dashboard and its agents finish starting before memory is read
try:
    from ray.util.state import list_nodes
    state_api = len(list_nodes(timeout=10)) == 1
except Exception:
    state_api = False
def children(pid):
    out = {pid}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1]) == pid:
                out |= children(int(p))
        except OSError:
            pass
    return out
rss = 0
for p in children(os.getpid()):
    try:
        rss += int(open(f"/proc/{p}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        pass
print(json.dumps({"seconds": seconds, "rss_mib": rss / 2**20, "state_api": state_api}))
stop_ray() if dashboard else ray.shutdown()
"""


def one(variant: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", PROBE, variant], capture_output=True, text=True, env=env, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list[dict]] = {"no dashboard": [], "dashboard": []}
    for _ in range(args.runs):
        rows["no dashboard"].append(one("none"))
        rows["dashboard"].append(one("dashboard"))
    for name, runs in rows.items():
        secs = [r["seconds"] for r in runs]
        mib = [r["rss_mib"] for r in runs]
        print(f"{name:13s} start {statistics.median(secs):5.1f} s (runs: {', '.join(f'{s:.1f}' for s in secs)})  "
              f"RSS {statistics.median(mib):5.0f} MiB  state API answers: {all(r['state_api'] for r in runs)}")


if __name__ == "__main__":
    main()
