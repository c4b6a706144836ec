#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Draw the benchmark chart from a results JSON written by run.py.

    chart.py results.json chart.svg

Two parts, drawn by gnuplot (Debian's gnuplot-nox) into one SVG:
  - top: ours / peer for every compared workload, as a bar from 1 (parity)
    on a log scale: a bar to the left means ours is faster or smaller, a
    bar to the right means the peer is;
  - bottom: the wake-up latency distributions (p10 ... p99) of every
    program and variant, for waiter and trigger on two CPUs and on one.
Needs only Python's standard library and the gnuplot program."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

COLOURS = {"C++": "#1f77b4", "GLib": "#2ca02c", "Go": "#17becf",
           "tokio": "#ff7f0e", "Node": "#9467bd", "baseline": "#7f7f7f"}
PCTS = (("p10", 10), ("p25", 25), ("p50", 50), ("p75", 75), ("p90", 90),
        ("p95", 95), ("p99", 99))
PROG_NAME = {"ct": "ours", "cpp": "C++", "glib": "GLib", "go": "Go",
             "rust": "tokio", "node": "Node"}


def q(s):
    """A gnuplot string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def draw(json_path, svg_path):
    gp = shutil.which("gnuplot")
    if gp is None:
        return "chart not drawn: gnuplot not found (apt-get install gnuplot-nox)"
    with open(json_path) as f:
        d = json.load(f)
    bars = [r for r in d["rows"] if r["ratio"] is not None and
            r["status"] == "ok" and r["source"] == "suite" and r["main"] and
            "chain_n(1)" not in r["workload"]]
    if not bars:
        return "chart not drawn: no ratios"
    tmp = tempfile.mkdtemp(prefix="ct-chart-")
    try:
        # ---- ratio bars, top to bottom in table order
        peers = [p for p in COLOURS if any(b["peer"] == p for b in bars)]
        n = len(bars)
        with open(os.path.join(tmp, "ratios.dat"), "w") as f:
            for i, b in enumerate(bars):
                y = n - i
                label = "%s  vs %s" % (b["workload"], b["peer"])
                lo = b.get("ratio_min") or b["ratio"]
                hi = b.get("ratio_max") or b["ratio"]
                f.write("%d %g %d %g %g %s\n" % (y, b["ratio"],
                                                 peers.index(b["peer"]), lo,
                                                 hi, q(label)))
        # ---- wake-up distributions
        dist = []  # (regime index, label, colour, [(latency_us, pct)])
        for prog, figs in d["raw"].items():
            variants = sorted({k.split(".")[1] for k in figs
                               if k.startswith("wake") and
                               k.endswith(".p50")})
            for v in variants:
                for ri, pfx in enumerate(("wake", "wake_1cpu")):
                    pts = [(figs["%s.%s.%s" % (pfx, v, p)]["median"] / 1000.0,
                            pc) for p, pc in PCTS
                           if "%s.%s.%s" % (pfx, v, p) in figs]
                    if pts:
                        dist.append((ri, "%s %s" % (PROG_NAME.get(prog, prog),
                                                    v), prog, pts))
        for k, (ri, label, prog, pts) in enumerate(dist):
            with open(os.path.join(tmp, "dist%d.dat" % k), "w") as f:
                for x, y in pts:
                    f.write("%g %g\n" % (x, y))
        bar_h = max(400, 16 * n + 120)
        dist_h = 420
        height = bar_h + dist_h
        s = []
        if svg_path.endswith(".png"):  # for a quick look; SVG is the chart
            s.append("set terminal pngcairo size 1100,%d noenhanced "
                     "font 'sans,9' background rgb 'white'" % height)
        else:
            s.append("set terminal svg size 1100,%d dynamic noenhanced "
                     "font 'sans,10' background rgb 'white'" % height)
        s.append("set output %s" % q(os.path.abspath(svg_path)))
        s.append("set datafile separator whitespace")
        s.append("set multiplot")
        # top panel
        s.append("set origin 0,%g" % (dist_h / height))
        s.append("set size 1,%g" % (bar_h / height))
        s.append("set lmargin 52")
        s.append("set title %s" % q(
            "libcanceltoken / peer, median of the pairwise ratios (%s mode, "
            "%s): left of 1 = ours faster or smaller" % (d["meta"]["mode"],
                                       d["meta"]["started"][:10])))
        s.append("set logscale x 10")
        s.append("set xrange [0.001:1000]")
        s.append("set yrange [0.3:%g]" % (n + 0.7))
        s.append("set xlabel 'ours / peer (log scale)'")
        s.append("set ytics scale 0 font 'sans,8'")
        s.append("set grid xtics")
        s.append("set key top right")
        s.append("set arrow 1 from 1,graph 0 to 1,graph 1 nohead lw 1.5 "
                 "lc rgb 'black'")
        s.append("set style fill solid 0.8 noborder")
        plots = []
        for pi, p in enumerate(peers):
            # boxxyerror: x y xlow xhigh ylow yhigh; a bar from 1 to the
            # ratio, on this peer's rows only (1/0 skips the others).
            plots.append(
                "%s using ($3==%d?$2:1/0):1:($2<1?$2:1):($2<1?1:$2):"
                "($1-0.35):($1+0.35):ytic(6) with boxxyerror lc rgb %s "
                "title %s" % (q(os.path.join(tmp, "ratios.dat")), pi,
                              q(COLOURS[p]), q("vs " + p)))
        # The range of the pairwise ratios over the repetitions.
        plots.append("%s using 2:1:4:5 with xerrorbars pt 0 lw 1 "
                     "lc rgb 'black' title 'min..max over the repetitions'"
                     % q(os.path.join(tmp, "ratios.dat")))
        s.append("plot " + ", ".join(plots))
        s.append("unset arrow 1")
        s.append("unset ytics")
        s.append("set ytics")
        s.append("set lmargin 10")
        # bottom panels
        for ri, title in enumerate(("Wake-up latency, waiter and trigger on "
                                    "2 CPUs", "Wake-up latency, on 1 CPU")):
            s.append("set origin %g,0" % (ri * 0.5))
            s.append("set size 0.5,%g" % (dist_h / height))
            s.append("set title %s" % q(title))
            s.append("set logscale x 10")
            s.append("set autoscale x")
            s.append("set yrange [0:100]")
            s.append("set xlabel 'latency, microseconds (log scale)'")
            s.append("set ylabel 'percentile'")
            s.append("set key bottom right font 'sans,8'")
            s.append("set grid xtics ytics")
            lines = []
            for k, (r2, label, prog, pts) in enumerate(dist):
                if r2 != ri:
                    continue
                # colour: the program (grey for the raw baselines that
                # ct_bench measures); line: solid for a blocking wait,
                # dashed for epoll on a descriptor.
                base = prog == "ct" and ("condvar" in label or
                                         "epoll_raw" in label)
                col = ("#7f7f7f" if base else "#d62728" if prog == "ct"
                       else COLOURS.get(PROG_NAME.get(prog, ""), "#000000"))
                dash = "dt 2" if "epoll" in label or "_unl" in label \
                    else "dt 1"
                if base:
                    label = label.replace("ours ", "baseline ")
                lines.append("%s using 1:2 with linespoints lw 1.5 pt 7 "
                             "ps 0.4 %s lc rgb %s title %s" % (
                                 q(os.path.join(tmp, "dist%d.dat" % k)),
                                 dash, q(col), q(label)))
            if lines:
                s.append("plot " + ", ".join(lines))
        s.append("unset multiplot")
        script = os.path.join(tmp, "chart.gp")
        with open(script, "w") as f:
            f.write("\n".join(s) + "\n")
        p = subprocess.run([gp, script], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60, check=False)
        if p.returncode != 0:
            return "chart not drawn: gnuplot: %s" % p.stderr.decode(
                "utf-8", "replace").strip()[-400:]
        return "wrote %s" % svg_path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    msg = draw(sys.argv[1], sys.argv[2])
    print(msg)
    sys.exit(0 if msg.startswith("wrote") else 1)
