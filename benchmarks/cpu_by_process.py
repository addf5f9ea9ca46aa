"""CPU share of every process on this machine over a window, busiest first (from /proc; Linux only).

Run it beside a command to see where the cores go, e.g. during a `cnnsweep train` epoch:

    .venv/bin/cnnsweep train sweeps/mnist.yaml --set data.root=../shared/data/mnist &
    sleep 60; .venv/bin/python benchmarks/cpu_by_process.py --seconds 20

100% is one core busy for the whole window.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def _cpu_ticks() -> dict[int, tuple[int, str]]:
    """pid -> (user + system clock ticks so far, command line)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # the process ended between listing and reading
            continue
        out[int(entry.name)] = (int(fields[11]) + int(fields[12]), command)  # utime + stime
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    before = _cpu_ticks()
    time.sleep(args.seconds)
    after = _cpu_ticks()
    per_s = os.sysconf("SC_CLK_TCK") * args.seconds
    rows = sorted(((after[p][0] - before[p][0]) / per_s * 100, after[p][1]) for p in after if p in before)[::-1]
    for share, command in rows[:args.top]:
        print(f"{share:6.1f}%  {command[:110]}")
    print(f"{sum(r[0] for r in rows):6.1f}%  all processes ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
