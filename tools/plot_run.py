#!/usr/bin/python3
"""Draws one `omniconn run` (`omniconn run --plot FILE.png` calls this).

  plot_run.py SAMPLES.json OUT.png   the picture: per-edge latency over the run, and the
                                     distribution of time to first chunk at the sink
  plot_run.py --check                exit 0 when matplotlib can be imported (else say how)

SAMPLES.json: {"title": str, "stream": bool, "first_chunk_ms": [..],
               "edges": [{"name": str, "arrival_s": [..], "latency_ms": [..]}]}
"""
import json
import math
import statistics
import sys


def load_matplotlib():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        sys.stderr.write("--plot needs matplotlib for /usr/bin/python3 "
                         "(apt-get install python3-matplotlib)\n")
        sys.exit(3)


def rank(sorted_values, q):
    if not sorted_values:
        return 0.0
    k = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[min(k, len(sorted_values) - 1)]


def latency_over_run(ax, edges):
    """Each payload as a dot; per edge, the median of each 1/60 of the run as a line."""
    end = max((max(e["arrival_s"]) for e in edges if e["arrival_s"]), default=0.0)
    bins = 60
    width = end / bins if end > 0 else 1.0
    for e in edges:
        xs, ys = e["arrival_s"], e["latency_ms"]
        if not xs:
            continue
        dots = ax.scatter(xs, ys, s=2, alpha=0.15, linewidths=0)
        groups = {}
        for x, y in zip(xs, ys):
            groups.setdefault(min(int(x / width), bins - 1), []).append(y)
        mids = sorted(groups)
        ys_sorted = sorted(ys)
        ax.plot([(b + 0.5) * width for b in mids], [statistics.median(groups[b]) for b in mids],
                "-", color=dots.get_facecolor()[0][:3], linewidth=1.6,
                label=f"{e['name']}: p50 {rank(ys_sorted, 0.5):.3f} ms, "
                      f"p99 {rank(ys_sorted, 0.99):.3f} ms")
    ax.set_yscale("log")
    ax.set_xlabel("time since the stage started (s)")
    ax.set_ylabel("put -> get latency (ms)")
    ax.set_title("Per-edge latency over the run (dots: payloads; lines: median per 1/60)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def first_chunk_distribution(ax, values, stream):
    what = "first chunk" if stream else "the request's payload"
    ax.set_title(f"Time to {what} at the sink ({len(values)} requests)")
    ax.set_xlabel("ms from the request's start at the source")
    ax.set_ylabel("requests")
    ax.grid(True, which="both", alpha=0.3)
    if not values:
        ax.text(0.5, 0.5, "no request finished", ha="center", transform=ax.transAxes)
        return
    v = sorted(values)
    lo, hi = max(v[0], 1e-3), max(v[-1], 1e-3)
    p50, p99 = rank(v, 0.5), rank(v, 0.99)
    if hi / lo > 20:  # a long tail: log bins, so the body and the tail both show
        edges = [lo * (hi / lo) ** (i / 50) for i in range(51)]
        ax.set_xscale("log")
    else:
        edges = 50
    ax.hist([max(x, lo) for x in v], bins=edges, color="tab:blue", alpha=0.8)
    ax.axvline(p50, color="k", linestyle="--", label=f"p50 {p50:.3f} ms")
    ax.axvline(p99, color="tab:red", linestyle="--", label=f"p99 {p99:.3f} ms")
    ax.legend(fontsize=8)


def main(argv):
    if argv[1:] == ["--check"]:
        load_matplotlib()
        return 0
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 64
    plt = load_matplotlib()
    with open(argv[1]) as f:
        run = json.load(f)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(14, 5))
    latency_over_run(a1, run["edges"])
    first_chunk_distribution(a2, run["first_chunk_ms"], run.get("stream", False))
    fig.suptitle(run.get("title", "omniconn run"), fontsize=10)
    fig.tight_layout()
    fig.savefig(argv[2], dpi=110)
    plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
