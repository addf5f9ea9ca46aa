"""What a sweep leaves reserved: run the quickstart sweep with N trials (ASHA stops most of them) in a
private Ray instance, then count, right after `run_sweep` returns, the placement groups still held, the
CPUs they reserve, and Ray Train's PlacementGroupCleaner actors still alive.

    .venv/bin/python benchmarks/sweep_reservations.py --trials 12 --output /tmp/res12
"""

from __future__ import annotations

import argparse
import json
import time


def count_cleaners() -> int:
    """Alive PlacementGroupCleaner actors, from the state API if it answers, else from the process table."""
    try:
        from ray.util.state import list_actors

        return len(list_actors(filters=[("class_name", "=", "PlacementGroupCleaner"), ("state", "=", "ALIVE")],
                               timeout=20))
    except Exception:  # noqa: BLE001 - no state API on this instance: count the actor processes instead
        import os

        n = 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                n += b"PlacementGroupCleaner" in open(f"/proc/{pid}/cmdline", "rb").read()
            except OSError:
                pass
        return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    import ray

    from cnnsweep.config import load_config
    from cnnsweep.distributed.cluster import start_ray
    from cnnsweep.distributed.tune import run_sweep

    cfg = load_config("sweeps/quickstart.yaml", [f"search.num_samples={args.trials}", "search.analyze=false"])
    start_ray()
    start = time.perf_counter()
    summary = run_sweep(cfg, args.output)
    held = [pg for pg in ray.util.placement_group_table().values() if pg["state"] in ("PENDING", "CREATED")]
    print(json.dumps({"trials": summary["trials"], "seconds": round(time.perf_counter() - start, 1),
                      "held_placement_groups": len(held),
                      "reserved_cpus": sum(b.get("CPU", 0) for pg in held for b in pg["bundles"].values()),
                      "cleaner_actors_alive": count_cleaners(),
                      "notes": [n for n in summary["notes"] if "placement" in n]}))


if __name__ == "__main__":
    main()
