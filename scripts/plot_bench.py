#!/usr/bin/env python3
"""Draws docs/bench/fanout.png from the fan-out benchmark's JSON lines.

    python3 scripts/plot_bench.py [RESULTS.jsonl] [OUT.png]
    python3 scripts/plot_bench.py --table [--all] [RESULTS.jsonl]   # BENCHMARKS.md's table
    python3 scripts/plot_bench.py --issue13 docs/bench/issue13.jsonl  # issue 13's table

Defaults: docs/bench/results.jsonl and docs/bench/fanout.png. For each (label, mode) the latest
line is used, so re-running a shape and redrawing replaces its figures.

Left: server RSS growth against watchers (one point per instance), with the 8 KiB-per-watcher
target as a line. Middle: RSS per idle watcher against watchers, with the 8 KiB target.
Right: upload-to-event latency p50 / p99 / max per shape, the server's beside the load
generator's floor (same shape against the echo server), with the 5 ms and 10 ms p99 targets.
Needs matplotlib (python3 -m pip install matplotlib).
"""

import json
import sys
from pathlib import Path


RSS_TARGET_KIB = 8
FD_CAP = 20_000  # open files per process on the benchmark machine
P99_TARGETS_MS = {"1000x2@100": 5.0, "100x100@50": 10.0}


def shape_key(row):
    return f"{row['sessions']}x{row['watchers_per_session']}@{row['upload_rate_per_s']:g}"


def load(path, every=False):
    """The result lines; unless `every`, only the latest of each (label, mode)."""
    rows, latest = [], {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        row = json.loads(line)
        if row.get("bench") != "fanout":
            continue
        rows.append(row)
        latest[(row["label"], row["mode"])] = row
    return rows if every else list(latest.values())


def legend(ax, **kwargs):
    """A legend with each label once."""
    handles, names = ax.get_legend_handles_labels()
    unique = {}
    for h, n in zip(handles, names):
        unique.setdefault(n, h)
    ax.legend(unique.values(), unique.keys(), **kwargs)


def ms(row, key, stat):
    v = row[key].get(stat)
    return "–" if v is None else f"{v:.2f}" if v < 10 else f"{v:.1f}"


def table(rows):
    """The results as the Markdown table of docs/BENCHMARKS.md."""
    order = sorted(
        rows,
        key=lambda r: (r["mode"] != "floor", r["instances"], r["watchers"], r["unix_time"]),
    )
    print(
        "| shape | mode | watchers (connected) | deliveries | p50 | p99 | max "
        "| upload answer p50 / p99 | reads / change | RSS / idle watcher "
        "| idle bytes / watcher / min | server CPU / event | generator CPU / event | load avg |"
    )
    print("|" + "---|" * 14)
    for r in order:
        server = r["mode"] == "server"
        print(
            f"| {r['label']} | {'server' if server else 'floor (echo)' if r['mode'] == 'floor' else r['mode']} "
            f"| {r['watchers']:,} ({r['watchers_connected']:,}) "
            f"| {r['deliveries']['received']:,} / {r['deliveries']['expected']:,} "
            f"| {ms(r, 'latency_ms', 'p50')} | {ms(r, 'latency_ms', 'p99')} "
            f"| {ms(r, 'latency_ms', 'max')} "
            f"| {ms(r, 'upload_request_ms', 'p50')} / {ms(r, 'upload_request_ms', 'p99')} "
            + (
                f"| {r['db_snapshot_reads_per_change']:g} "
                f"| {r['rss_kib_per_idle_watcher']:.1f} KiB "
                f"| {r['idle_bytes_per_watcher_per_minute']:.0f} B "
                f"| {r['server_cpu_us_per_delivered_event']:,.0f} µs "
                if server
                else "| – | – | – | – "
            )
            + f"| {r['load_cpu_us_per_delivered_event']:,.0f} µs "
            f"| {r['loadavg_at_start'][0]:.1f} |"
        )


# Issue 13's "before" (its opening table), for the rows beside this run's.
ISSUE13_BEFORE = {
    "sent": ("3.3", "10–17", "97 / 104", "2.4 KiB"),
    "answer": ("2.1", "7–12", "– / 94–99", ""),
    "nchan": ("0.78", "1.9", "5 / 13", "10.1 KiB"),
}


def by_label(rows, label, mode="server"):
    found = [r for r in rows if r["label"] == label and r["mode"] == mode]
    return found[-1] if found else None


def anchors(rows, label, nchan):
    """The same run's CPU per delivered event of nchan (its publishes included) and of the
    bench's echo server (`--floor`: a watch slot and a write per watcher, nothing else)."""
    def cpu(r):
        return r["server_cpu_us_per_delivered_event"]
    found = []
    if nchan:
        found.append(f"nchan, its publishes included, {cpu(nchan)} µs")
    floor = by_label(rows, f"{label} floor", "floor")
    if floor:
        found.append(f"the echo server {cpu(floor)} µs")
    return "; " + "; ".join(found) if found else ""


def issue13(rows):
    """Issue 13's table from one `SHAPES=issue13` run: before (the issue's), after, nchan."""
    def f(v):
        return "–" if v is None else f"{v:.2f}" if v < 10 else f"{v:.1f}"

    def pct(r, key):
        p = (r or {}).get(key) or {}
        return f(p.get("p50")), f(p.get("p99")), f"{f(p.get('p999'))} / {f(p.get('max'))}"

    def kib(r):
        return f"{r['rss_kib_per_idle_watcher']:.1f} KiB" if r else "–"

    main = by_label(rows, "i13 100x100")
    nchan = by_label(rows, "i13 100x100 (nchan)", "nchan")
    print("100 sessions × 100 SSE watchers, 1,000 uploads at 50/s (ms):\n")
    print("| | p50 | p99 | p99.9 / max | RSS per idle watcher |")
    print("|---|---|---|---|---|")
    b = ISSUE13_BEFORE
    print("| before (issue 13): upload sent → snapshot at every watcher | %s | %s | %s | %s |" % b["sent"])
    print("| before (issue 13): the upload's own answer | %s | %s | %s | %s |" % b["answer"])
    print("| before (issue 13): nchan publish → every subscriber | %s | %s | %s | %s |" % b["nchan"])
    print("| **after**: upload sent → snapshot at every watcher | %s | %s | %s | %s |"
          % (*pct(main, "latency_ms"), kib(main)))
    print("| **after**: the upload's own answer | %s | %s | %s | |" % pct(main, "upload_request_ms"))
    print("| **after**: upload's answer → snapshot at its last watcher | %s | %s | %s | |"
          % pct(main, "last_watcher_after_upload_answer_ms"))
    print("| nchan, same run: publish sent → message at every subscriber | %s | %s | %s | %s |"
          % (*pct(nchan, "latency_ms"), kib(nchan)))
    # nchan delivers before it answers the publish, so its yardstick is publish sent → last.
    print("| nchan, same run: publish sent → its last subscriber | %s | %s | %s | |"
          % pct(nchan, "last_watcher_after_upload_sent_ms"))

    print("\nPer target (this run):\n")
    print("| target | shape | measured | goal |")
    print("|---|---|---|---|")
    idle = by_label(rows, "i13 idle 10k")
    for r, shape in ((idle, "1,000 uploads, 10,000 idle watchers"), (main, "100×100")):
        if r:
            print(f"| 1. no stalls: upload answer max | {shape} | {f(r['upload_request_ms']['max'])} ms | ≤ 20 ms |")
    if main and main.get("heartbeats"):
        h = main["heartbeats"]
        print(f"| 1. heartbeats spread | 100×100 | {h['received']:,} received over {h['span_ms'] / 1000:.0f} s; "
              f"busiest 1 ms {h['max_in_1ms']:,}, busiest 10 ms {h['max_in_10ms']:,} "
              f"({100 * h['max_share_of_watchers_in_10ms']:.1f}% of the watchers) | not all at once |")
    pg = by_label(rows, "i13 100x100 pg+redis")
    for r, shape, goal in ((main, "100×100, SQLite", "p50 ≤ 1.0, p99 ≤ 3 ms"),
                           (pg, "100×100, PostgreSQL + Redis", "within 1.5× of SQLite")):
        if r:
            u = r["upload_request_ms"]
            print(f"| 2. upload answer p50 / p99 | {shape} | {f(u['p50'])} / {f(u['p99'])} ms | {goal} |")
    for label, shape in (("i13 100x100", "100×100"), ("i13 1000x2", "1,000×2")):
        ours, theirs = by_label(rows, label), by_label(rows, f"{label} (nchan)", "nchan")
        if ours and theirs:
            o, t = ours["last_watcher_after_upload_answer_ms"], theirs["last_watcher_after_upload_sent_ms"]
            print(f"| 3. answer → last watcher p50 / p99 | {shape} | {f(o['p50'])} / {f(o['p99'])} ms "
                  f"(nchan publish sent → last: {f(t['p50'])} / {f(t['p99'])}) | ≤ nchan |")
        if ours:
            print(f"| 3. server CPU per delivered event, excl. upload | {shape} | "
                  f"{ours.get('server_cpu_us_per_delivered_event_excl_upload')} µs "
                  f"(with the upload {ours['server_cpu_us_per_delivered_event']} µs; upload alone "
                  f"{(ours.get('calibration') or {}).get('server_cpu_us_per_upload')} µs{anchors(rows, label, theirs)}) | ≤ 3 µs |")
    for label in ("i13 300x1 x3 redis", "i13 300x1 x3 redis cluster", "i13 300x1 x3 nats"):
        r = by_label(rows, label)
        if r:
            print(f"| 5. doorbells per instance (expected) | 3 instances, {label.split(' x3 ')[-1]} | "
                  f"{', '.join(f'{d:g}' for d in r['bus_doorbells_by_instance'])} "
                  f"({', '.join(str(d) for d in r['bus_doorbells_expected_by_instance'])}); "
                  f"latency p50 / p99 {f(r['latency_ms']['p50'])} / {f(r['latency_ms']['p99'])} ms | equal |")
    r = by_label(rows, "i13 190x100")
    if r:
        print(f"| 6. RSS per idle watcher | 19,000 watchers | {kib(r)} "
              f"({r['deliveries']['received']:,} / {r['deliveries']['expected']:,} delivered) | ≤ 2.5 KiB |")
    loads = sorted({r["loadavg_at_start"][0] for r in rows})
    if loads:
        print(f"\nLoad average at the start of each run: {loads[0]:.1f}–{loads[-1]:.1f}.")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    results = Path(args[0] if args else "docs/bench/results.jsonl")
    out = Path(args[1] if len(args) > 1 else "docs/bench/fanout.png")
    if "--issue13" in sys.argv:
        issue13(load(results, every=True))
        return
    if "--table" in sys.argv:
        table(load(results, every="--all" in sys.argv))
        return
    # Only drawing needs matplotlib; the tables do not.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    rows = load(results)
    servers = sorted(
        (r for r in rows if r["mode"] == "server"), key=lambda r: r["watchers_connected"]
    )
    # The hatched bars: nchan for a shape measured beside it, else the generator's floor.
    floors = {shape_key(r): r for r in rows if r["mode"] == "floor"}
    floors.update({shape_key(r): r for r in rows if r["mode"] == "nchan"})

    fig, (ax_rss, ax_per, ax_lat) = plt.subplots(
        1, 3, figsize=(17, 5.2), gridspec_kw={"width_ratios": [1, 1, 1.5]}
    )

    # RSS growth against watchers, per instance.
    xmax = 1
    for r in servers:
        multi = r["instances"] > 1
        for i, n in enumerate(r["watchers_connected_by_instance"]):
            grow_mib = max(r["rss_kib_idle"][i] - r["rss_kib_before"][i], 0) / 1024
            ax_rss.scatter(
                n,
                grow_mib,
                marker="s" if multi else "o",
                color="tab:purple" if multi else "tab:blue",
                label=("each of %d instances" % r["instances"]) if multi else "one instance",
            )
            xmax = max(xmax, n)
        if not multi:
            ax_rss.annotate(
                r["label"],
                (r["watchers_connected"], (r["rss_kib_idle"][0] - r["rss_kib_before"][0]) / 1024),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
            )
    xs = [0, xmax * 1.05]
    ax_rss.plot(xs, [x * RSS_TARGET_KIB / 1024 for x in xs], "g--", label="target: 8 KiB / watcher")
    for ax in (ax_rss, ax_per):
        ax.axvline(FD_CAP, color="grey", linestyle=":", label="open-file cap per process")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
        ax.set_xlim(0, FD_CAP * 1.05)
    ax_rss.set_xlabel("idle SSE watchers on the instance")
    ax_rss.set_ylabel("server RSS growth (MiB)")
    ax_rss.set_title("Server RSS against watchers")
    ax_rss.grid(alpha=0.3)
    legend(ax_rss, fontsize=8, loc="upper left")

    # RSS per watcher.
    for r in servers:
        multi = r["instances"] > 1
        for i, n in enumerate(r["watchers_connected_by_instance"]):
            ax_per.scatter(
                n,
                r["rss_kib_per_idle_watcher_by_instance"][i],
                marker="s" if multi else "o",
                color="tab:purple" if multi else "tab:blue",
                label=("each of %d instances" % r["instances"]) if multi else "one instance",
            )
    ax_per.axhline(RSS_TARGET_KIB, color="g", linestyle="--", label="target ≤ 8 KiB")
    ax_per.set_xlabel("idle SSE watchers on the instance")
    ax_per.set_ylabel("RSS per idle watcher (KiB)")
    ax_per.set_title("Memory per idle watcher")
    ax_per.set_ylim(bottom=0)
    ax_per.grid(alpha=0.3)
    legend(ax_per, fontsize=8, loc="center right")

    # Latency percentiles per shape, server and floor.
    stats = ["p50", "p99", "max"]
    colors = {"p50": "tab:blue", "p99": "tab:orange", "max": "tab:red"}
    width = 0.13
    labels = []
    for x, r in enumerate(servers):
        labels.append(
            f"{r['label']}\n{r['watchers_connected']:,} watchers"
            + (f", {r['instances']} inst." if r["instances"] > 1 else "")
        )
        floor = floors.get(shape_key(r)) if r["instances"] == 1 else None
        for j, s in enumerate(stats):
            v = r["latency_ms"].get(s)
            if v is not None:
                ax_lat.bar(x + (j - 3) * width + width / 2, v, width, color=colors[s],
                           label=f"server {s}")
            if floor and floor["latency_ms"].get(s) is not None:
                ax_lat.bar(x + j * width + width / 2, floor["latency_ms"][s], width,
                           color=colors[s], alpha=0.35, hatch="//",
                           label=f"{'nchan' if floor['mode'] == 'nchan' else 'generator floor'} {s}")
        target = P99_TARGETS_MS.get(shape_key(r))
        if target and r["instances"] == 1:
            ax_lat.hlines(target, x - 0.45, x + 0.45, colors="g", linestyles="--",
                          label="p99 target (5 / 10 ms)")
    ax_lat.set_xticks(range(len(labels)))
    ax_lat.set_xticklabels(labels, fontsize=7)
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("upload → snapshot at every watcher (ms, log)")
    ax_lat.set_title("Latency per shape: server (solid); nchan or the generator floor (hatched)")
    ax_lat.grid(axis="y", alpha=0.3, which="both")
    legend(ax_lat, fontsize=7, ncol=2)

    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out} from {len(rows)} result(s) in {results}")


if __name__ == "__main__":
    main()
