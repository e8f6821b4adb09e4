#!/usr/bin/env python3
"""What the supervisor costs a local process run.

Starts `true` directly and under `panda __supervise` (as a node does: the supervisor's stdin is
one end of a socket pair, and it reports `started` and `exited` on it), in alternating rounds,
and prints each round's time per run and the supervised/direct ratio pair by pair; then the
supervisor's resident memory while its job sleeps.

    python3 benches/supervisor_cost.py target/release/panda [RUNS_PER_ROUND] [ROUNDS]
"""

import socket
import statistics
import subprocess
import sys
import time


def direct():
    subprocess.run(["true"], stdin=subprocess.DEVNULL, check=True)


def supervised(binary):
    ours, theirs = socket.socketpair()
    process = subprocess.Popen([binary, "__supervise", "--", "true"], stdin=theirs)
    theirs.close()
    reports = ours.makefile()
    started, exited = reports.readline(), reports.readline()
    if not started.startswith("started") or exited.strip() != "exited code 0":
        sys.exit(f"unexpected reports from the supervisor: {started!r} {exited!r}")
    process.wait()
    ours.close()


def per_run_ms(run, runs):
    began = time.perf_counter()
    for _ in range(runs):
        run()
    return (time.perf_counter() - began) / runs * 1000


def main():
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    ratios = []
    for round_ in range(rounds):
        a = per_run_ms(direct, runs)
        b = per_run_ms(lambda: supervised(binary), runs)
        ratios.append(b / a)
        print(f"round {round_ + 1}: direct {a:.2f} ms/run, supervised {b:.2f} ms/run, ratio {b / a:.2f}")
    print(f"median ratio supervised/direct: {statistics.median(ratios):.2f}")

    ours, theirs = socket.socketpair()
    process = subprocess.Popen([binary, "__supervise", "--", "sleep", "5"], stdin=theirs)
    theirs.close()
    ours.makefile().readline()
    time.sleep(0.3)
    with open(f"/proc/{process.pid}/status") as status:
        memory = [line.split() for line in status if line.startswith(("VmRSS", "RssAnon"))]
    print("supervisor:", ", ".join(f"{name[:-1]} {value} {unit}" for name, value, unit in memory))
    ours.close()
    process.wait()


if __name__ == "__main__":
    main()
