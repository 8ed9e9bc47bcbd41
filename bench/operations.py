#!/usr/bin/env python3
"""Operation timings for scripts/bench-operations.sh.

    operations.py measure BIN RUNS RECORDS QUERIES [BEFORE_QUERIES] >> results.jsonl
    operations.py report RESULTS.jsonl [REV] [PLOT.png]

`measure` runs every operation of QUERIES (with its defaults, and with
unify=true where it takes it) RUNS times through `BIN query` on the database of
DATABASE_URL and prints one JSON line per run variant: the median of the query's
own elapsed_ms (database and row conversion, not process start), or the error
that stopped it (a statement timeout). With BEFORE_QUERIES it times that folder's
packs too. `simple_demo`, one counting pass over every table through the same
path, is the baseline each time is divided by.

`report` prints, per size, the time and the ratio to the baseline (and the
speed-up against the revision's packs), and with several sizes the growth table:
each operation's time per size and how it grew against the baseline (1.0 means
it grew like a scan of the data, linearly); with PLOT it draws the times against
the data size on log-log axes (matplotlib).
"""
import json
import statistics
import subprocess
import sys

SKIP = {"custom_complex_query"}  # runs caller-supplied SQL; nothing to measure
BASELINE = "simple_demo"


def catalog(binary, queries):
    out = subprocess.run([binary, "operations", "--json", "--queries", queries],
                         check=True, capture_output=True, text=True).stdout
    return {o["name"]: o for o in json.loads(out)["operations"]}


def takes_unify(op):
    return "unify" in (op.get("parameters") or {}).get("properties", {})


def timed(binary, runs, name, params, queries):
    """(median seconds, None) or (None, error) when a run fails."""
    times = []
    for _ in range(runs):
        # The time of the query is measured, not the CLI's 64 MiB answer
        # limit (customer_analysis answers 100,000 rows of about 650 bytes at
        # 1M records; the API pages such an answer and a job streams it).
        cmd = [binary, "query", name, "-f", "json", "--queries", queries,
               "--max-answer-bytes", str(1 << 30)]
        for k, v in params.items():
            cmd += ["-p", f"{k}={v}"]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            return None, (p.stderr.strip().splitlines() or ["failed"])[-1]
        times.append(json.loads(p.stdout)["elapsed_ms"] / 1000.0)
    return statistics.median(times), None


def measure(binary, runs, records, queries, before=None):
    now = catalog(binary, queries)
    old = catalog(binary, before) if before else {}
    for name in sorted(now):
        if name in SKIP:
            continue
        variants = [{}] + ([{"unify": "true"}] if takes_unify(now[name]) else [])
        for params in variants:
            seconds, error = timed(binary, runs, name, params, queries)
            row = {"records": records, "operation": name, "params": params,
                   "seconds": seconds, "error": error}
            if before and name in old and (not params or takes_unify(old[name])):
                row["before_seconds"], row["before_error"] = timed(binary, runs, name, params, before)
            print(json.dumps(row), flush=True)


def label(row):
    return row["operation"] + "".join(f" {k}={v}" for k, v in row["params"].items())


def cell(seconds, error):
    return f"{seconds:.3f}" if seconds is not None else f"failed ({(error or '')[:50]})"


def report(path, rev=None, plot=None):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    sizes = sorted({r["records"] for r in rows})
    base = {r["records"]: r["seconds"] for r in rows
            if r["operation"] == BASELINE and not r["params"]}
    for size in sizes:
        print(f"\n{size:,} records; baseline {BASELINE}: {base[size]:.3f} s\n")
        before = any("before_seconds" in r for r in rows if r["records"] == size)
        head = "| operation | seconds | x baseline |" + (f" {rev} seconds | speed-up |" if before else "")
        print(head)
        print("|" + "---|" * (head.count("|") - 1))
        for r in rows:
            if r["records"] != size:
                continue
            t = r["seconds"]
            line = f"| {label(r)} | {cell(t, r['error'])} | {t / base[size]:.1f} |" if t is not None \
                else f"| {label(r)} | {cell(t, r['error'])} | - |"
            if before:
                if "before_seconds" in r:
                    b = r["before_seconds"]
                    speed = f"{b / t:.1f}x" if b is not None and t else "-"
                    line += f" {cell(b, r.get('before_error'))} | {speed} |"
                else:
                    line += " (not there) | - |"
            print(line)
    if len(sizes) < 2:
        return
    print("\nGrowth: seconds per size; 'vs scan' is how much faster than the baseline the"
          " time grew from the smallest to the largest size (1.0: linearly, like a scan).\n")
    head = "| operation | " + " | ".join(f"{s:,}" for s in sizes) + " | vs scan |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    series = {}
    for r in rows:
        series.setdefault(label(r), {})[r["records"]] = r
    for name, by_size in series.items():
        cells = [cell(by_size[s]["seconds"], by_size[s]["error"]) if s in by_size else "-" for s in sizes]
        lo, hi = by_size.get(sizes[0]), by_size.get(sizes[-1])
        growth = "-"
        if lo and hi and lo["seconds"] and hi["seconds"]:
            growth = f"{(hi['seconds'] / lo['seconds']) / (base[sizes[-1]] / base[sizes[0]]):.2f}"
        print(f"| {name} | " + " | ".join(cells) + f" | {growth} |")
    if plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(9, 6))
        ax.set_prop_cycle(color=[plt.cm.tab20(i % 20) for i in range(len(series))])
        for name, by_size in sorted(series.items()):
            xs = [s for s in sizes if s in by_size and by_size[s]["seconds"]]
            if len(xs) < 2:
                continue
            style = "--" if name == BASELINE else "-"
            ax.plot(xs, [by_size[s]["seconds"] for s in xs], style, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("records generated (quarry demo-data --scale)")
        ax.set_ylabel("seconds (median of the query's elapsed_ms)")
        ax.set_title("Operation latency as the data grows (defaults; dashed: one scan)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        print(f"\nplot written to {plot}")


if __name__ == "__main__":
    if sys.argv[1] == "measure":
        measure(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5],
                sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] else None)
    elif sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None,
               sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None)
    else:
        sys.exit(__doc__)
