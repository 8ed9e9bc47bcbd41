#!/usr/bin/env python3
"""CPU use by process group over a window, for scripts/bench-http.sh.

    cpu.py START END DATABASE QUARRY_PID PEER_PID

START and END are Unix times (fractions allowed). The script starts this before
the run it measures, so Python's own start-up (slow on a saturated machine) does
not shift the window. It reads utime+stime of every process from /proc at START
and at END and prints one line

    CPU quarry=.. pg=.. gen=.. peer=.. pg_other=.. other=.. idle=..

in percent of ONE core (a 2-core machine has 200). Groups: the quarry server;
PostgreSQL backends of DATABASE; the load generator (wrk or pgbench); the HTTP
peer (PEER_PID and its child processes); other PostgreSQL processes (background
workers, other databases); and "other", the machine's busy time (/proc/stat) not
taken by those groups: another program running at the time (a compiler, say), the
kernel's own threads, and any process that ended inside the window. A process
that started inside the window counts from zero.
"""
import os
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def snapshot():
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[0] is state (field 3 of proc(5)): ppid is field 4, utime and
        # stime are 14 and 15, starttime (which tells a reused pid) is 22.
        ticks = int(fields[11]) + int(fields[12])
        out[int(d)] = (comm, cmd, ticks, int(fields[1]), fields[19])
    return out


def cpu_ticks():
    """(busy, idle) ticks of all cores since boot; iowait counts as idle."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    idle = v[3] + v[4]
    return sum(v) - idle, idle


def group(pid, ppid, comm, cmd, db, quarry, peer):
    if pid == quarry:
        return "quarry"
    if peer and (pid == peer or ppid == peer):
        return "peer"
    if comm in ("wrk", "pgbench"):
        return "gen"
    if cmd.startswith("postgres:"):
        return "pg" if f" {db} " in cmd else "pg_other"
    if comm == "postgres":
        return "pg_other"
    return "other"


def main():
    start, end = float(sys.argv[1]), float(sys.argv[2])
    db, quarry, peer = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    time.sleep(max(start - time.time(), 0))
    a, (ba, ia), ta = snapshot(), cpu_ticks(), time.monotonic()
    time.sleep(max(end - time.time(), 0.2))
    b, (bb, ib), tb = snapshot(), cpu_ticks(), time.monotonic()
    wall = (tb - ta) * TICK
    use = {k: 0 for k in ("quarry", "pg", "gen", "peer", "pg_other", "other")}
    me = os.getpid()
    for pid, (comm, cmd, ticks, ppid, start) in b.items():
        if pid == me:
            continue
        before = a.get(pid)
        delta = ticks - before[2] if before and before[4] == start else ticks
        use[group(pid, ppid, comm, cmd, db, quarry, peer)] += max(delta, 0)
    # "other" is the machine's busy time not taken by a named group: it also
    # holds processes that started and ended inside the window.
    named = sum(v for k, v in use.items() if k != "other")
    use["other"] = max(bb - ba - named, 0)
    parts = " ".join(f"{k}={100 * v / wall:.0f}" for k, v in use.items())
    print(f"CPU {parts} idle={100 * (ib - ia) / wall:.0f}")


if __name__ == "__main__":
    main()
