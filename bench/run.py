#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Run the libcanceltoken benchmark suite against its peers, in one run.

Programs, each printing `key,unit,median,min,max,note` lines
(bench_util.h):
  ct    ct_bench: libcanceltoken, plus raw baselines in the same process
  cpp   cpp_bench: C++20 <stop_token>
  glib  glib_bench: GLib's GCancellable            (optional peer)
  go    go_bench: Go's package context             (optional peer)
  rust  rust_bench: tokio-util's CancellationToken (optional peer)
  node  node_bench.mjs: Node's AbortController     (optional peer)
Method (bench/README.md, "Method", says why).  Every run of a program
is a fresh process that runs ONE workload group (`--only GROUP --reps 1`;
groups: memory check fanout chain churn wake poll), so that each memory
figure starts from a fresh heap and the two runs of a pair are seconds
apart, never minutes.  Repetition r (5 by default) takes the groups in
turn; for each group and each peer (in an order that rotates from one
repetition to the next) it makes SUBRUNS[group] runs of ours and as many
of the peer's, alternating A B, B A, A B ... (the alternation of each
(group, peer) pair continues from one repetition to the next, so that
neither side of any pair always goes first; every other pair starts with
the peer).  A row whose peer ran fewer repetitions than the run (it
failed part-way) has no verdict.
Programs never run at the same time.  In a repetition, a side's figure
is the median of its sub-runs (3 for check, chain, churn and wake; 1 for
memory, fan-out and poll; 1 for all in --quick; `--subruns N` sets them
all).  A row's ratio is
the median of the pairwise ratios ours / peer, one per repetition, with
their min and max; when that range contains 1 the row has no verdict.  A
baseline measured by ct_bench pairs with ours in the same processes (the
medians of the same sub-runs).  Every peer is run in exactly the same way.  ct and cpp must
run; a peer that is not built or fails is reported as unavailable and
the run goes on; a peer whose first run of a group prints no figure (Go
and tokio have no poll, Node no wake-up) is not run for that group again.

Why: on this kind of machine (a 2-vCPU KVM guest on a shared host) the
speed of the same loop swings by 1.5-2x for stretches of a few hundred
milliseconds to seconds (a host-side frequency or contention state: no
steal time is reported, and the guest has no cycle counter to tell which).
Such a stretch moves every CPU-bound figure of a process alike (within one
run of ct_bench, the check figures correlate 0.8-0.9, chain with churn
0.8, groups minutes apart ~0.1).  When one program ran all its groups in
one process, the two members of a pair ran minutes apart and landed in
different states, and a single such pair put a row's min..max across 1.
Running a group alone puts the pair's members next to each other in time,
and the median of alternating sub-runs makes each side's figure robust to
one run caught in a slow (or a fast) stretch, or preempted by another
process.

Figures produced elsewhere join the table through --extra files (the
token server's net_bench, the Python package's benchmarks): see
bench/README.md for their format.  The Python benchmarks interleave ours
and their peer round by round inside their one run and give the per-round
ratios, so their rows get a pairwise median [min..max] and a verdict too
(and, for a row with a target, whether every round met it).

This script pairs each of our figures with its counterpart in every peer,
prints one table (ours, peer, ours / peer [min..max] pairwise),
writes it to CSV, JSON and Markdown, and draws the chart (chart.py) when
gnuplot is installed.  It reports figures and asserts nothing about them.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from workloads import PEERS, PEER_NAME, REQUIRED, WORKLOADS, is_dist_key  # noqa: E402
from report import NO_VERDICT, print_table, write_files  # noqa: E402

# The workload groups, in the order each repetition runs them (each in a
# fresh process of every program: `--only GROUP`), and how many runs of
# each side one repetition makes of a group (the repetition's figure of a
# side is the median of them).  Three for the groups whose figures are
# short CPU-bound loops or latencies, which the machine's speed swings
# move most; one for memory (RSS figures are exact to the page) and for
# fan-out and poll (long, stable loops; fan-out is the most expensive
# group of every program).
GROUPS = ("memory", "check", "fanout", "chain", "churn", "wake", "poll")
SUBRUNS = {"memory": 1, "check": 3, "fanout": 1, "chain": 3, "churn": 3,
           "wake": 3, "poll": 1}

# ---------------------------------------------------------------------------

def parse(text):
    """key -> dict(unit, median, min, max, note); plus comment lines."""
    res, comments = {}, []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            comments.append(line.lstrip("# "))
            continue
        parts = line.split(",", 5)
        if len(parts) < 5:
            print("run.py: ignoring malformed line: %r" % line,
                  file=sys.stderr)
            continue
        try:
            med, lo, hi = (float(x) for x in parts[2:5])
        except ValueError:
            print("run.py: ignoring malformed line: %r" % line,
                  file=sys.stderr)
            continue
        res[parts[0]] = {"unit": parts[1], "median": med, "min": lo,
                         "max": hi, "note": parts[5] if len(parts) > 5 else ""}
    return res, comments


def run(cmd, timeout):
    """Run one benchmark program; its stderr (progress) goes to ours."""
    print("run.py: running %s" % " ".join(cmd), file=sys.stderr, flush=True)
    status = "ok"
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None,
                           timeout=timeout, check=False)
        out = p.stdout
        if p.returncode < 0:
            status = "killed by signal %s" % signal.Signals(-p.returncode).name
        elif p.returncode != 0:
            status = "exit status %d" % p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
        status = "timed out after %d s" % timeout
    except OSError as e:
        out = b""
        status = "could not run: %s" % e
    if status != "ok":
        print("run.py: %s: %s (results so far are kept)" % (cmd[0], status),
              file=sys.stderr)
    return out.decode("utf-8", "replace"), status


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg():
    """The 1-minute load average, or None."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cpu_busy(seconds=0.5):
    """Fraction of all CPUs' time spent busy over a short window, or None.
    Sampled just before the run: a busy machine makes the figures noisy."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
        return sum(v), idle
    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (i1 - i0) / (t1 - t0) if t1 > t0 else None


# ---------------------------------------------------------------------------
# Extra result files (--extra [LABEL=]PATH).

def read_extra(spec):
    """Returns (label, rows, comments, status).  Two formats: a results CSV
    with run.py's own header (its rows are taken as they are), or the
    programs' `key,unit,median,min,max,note` lines, where a comment line
    `# pair,OUR_KEY,PEER_KEY,PEER NAME,NOTE` makes a compared row and every
    other key becomes a row of its own."""
    label, path = (spec.split("=", 1) if "=" in spec and
                   not os.path.exists(spec) else (None, spec))
    if label is None:
        label = os.path.splitext(os.path.basename(path))[0]
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        return label, [], [], "unavailable (%s)" % e.strerror
    return parse_extra(label, text)


def parse_extra(label, text):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if text.lstrip().startswith("{"):
        return extra_json(label, text)
    if lines and lines[0].startswith("section,workload,unit,ours_key"):
        rows = []
        for r in csv.DictReader(lines):
            def res(pfx):
                if r.get(pfx + "_median", "") in ("", None):
                    return None
                return {"unit": r["unit"], "median": float(r[pfx + "_median"]),
                        "min": float(r[pfx + "_min"] or r[pfx + "_median"]),
                        "max": float(r[pfx + "_max"] or r[pfx + "_median"]),
                        "note": ""}
            ratio = float(r["ratio"]) if r.get("ratio") else None
            rows.append(make_row(r["section"] or label, r["workload"],
                                 r["unit"], r["ours_key"], res("ours"),
                                 r["peer"], "", r["peer_key"], res("peer"),
                                 ratio, r.get("note", ""),
                                 r.get("status") or "ok", True, label))
            if r.get("ratio_min") and r.get("ratio_max"):  # pairwise
                rows[-1].update(
                    ratio_min=float(r["ratio_min"]),
                    ratio_max=float(r["ratio_max"]),
                    pairs=int(r["pairs"]) if r.get("pairs") else None,
                    verdict=r.get("verdict") or None)
                if r.get("target_verdict"):
                    rows[-1].update(target=float(r["target"]),
                                    target_verdict=r["target_verdict"])
        return label, rows, [], "ok"
    res, comments = parse(text)
    rows, used = [], set()
    for c in comments:
        if not c.startswith("pair,"):
            continue
        parts = c.split(",", 4)
        if len(parts) < 4:
            continue
        okey, pkey, pname = parts[1], parts[2], parts[3]
        note = parts[4] if len(parts) > 4 else ""
        ours, peer = res.get(okey), res.get(pkey)
        if ours is None:
            continue
        used.update((okey, pkey))
        ratio = (ours["median"] / peer["median"]
                 if peer and peer["median"] > 0 else None)
        rows.append(make_row(label, okey, ours["unit"], okey, ours, pname, "",
                             pkey, peer, ratio, note,
                             "ok" if peer else "missing", True, label))
    # A producer whose figures are not ours (bench/net_floor: the kernel
    # alone) says whose they are in a comment "figures-of: NAME"; its rows
    # then show them as that peer's, with no figure of ours.
    owner = next((c.split(":", 1)[1].strip() for c in comments
                  if c.startswith("figures-of:")), None)
    for key, r in res.items():
        if key in used:
            continue
        if owner:
            rows.append(make_row(label, key, r["unit"], "", None, owner, "",
                                 key, r, None, r["note"], "peer only", True,
                                 label))
        else:
            rows.append(make_row(label, key, r["unit"], key, r, "", "", "",
                                 None, None, r["note"], "ours only", True,
                                 label))
    return label, rows, [c for c in comments if not c.startswith("pair,")
                         and not c.startswith("figures-of:")], "ok"


# Keys of a JSON result that are not a peer's figures.
JSON_NOT_PEER = ("case", "key", "unit", "ours", "ratio", "note", "rounds",
                 "pairwise", "target")


def ratio_stats(rs, target=None):
    """A row's ratio fields from pairwise ratios ours / peer (one per
    interleaved round): median, min, max, pairs and verdict, as pairwise()
    gives for the suite's own rows; with `target` (the largest ours / peer
    the target allows), also target_verdict: "met" (every ratio at or
    below it), "missed" (every one above) or "no verdict"."""
    lo, hi = min(rs), max(rs)
    out = {"ratio": median(rs), "ratio_min": lo, "ratio_max": hi,
           "pairs": len(rs), "ratios": rs,
           "verdict": ("faster" if hi < 1 else "slower" if lo > 1 else
                       NO_VERDICT)}
    if target is not None:
        out["target"] = target
        out["target_verdict"] = ("met" if hi <= target else
                                 "missed" if lo > target else NO_VERDICT)
    return out


def extra_json(label, text):
    """A JSON document {"results": [{"case": NAME, "unit": U, "ours":
    {median, min, max}, "<peer>": {median, min, max}}, ...]}, as the Python
    package's bench.py and cross_process.py write with --json.  The peer is
    the one entry besides "ours" that holds figures ("reference" in
    bench.py), and its display name is the document's "peer" if it has
    one.  A result with "pairwise" (ours / peer for each interleaved round,
    this table's convention) gets the median [min..max] of those and a
    verdict, as the suite's own pairs; with "target": {"max_ratio": X,
    "text": ...} also whether every round met the target.  Without
    "pairwise" the ratio is ours / peer of the medians (one run)."""
    try:
        doc = json.loads(text)
        results = doc["results"]
    except (ValueError, KeyError, TypeError) as e:
        return label, [], [], "unavailable (not a results document: %s)" % e
    rows = []

    def fig(d, unit):
        if not isinstance(d, dict) or "median" not in d:
            return None
        return {"unit": unit, "median": float(d["median"]),
                "min": float(d.get("min", d["median"])),
                "max": float(d.get("max", d["median"])), "note": ""}
    for r in results:
        name = r.get("case") or r.get("key") or "?"
        unit = r.get("unit", "")
        ours = fig(r.get("ours"), unit)
        pkeys = [k for k in r if k not in JSON_NOT_PEER]
        pk = pkeys[0] if pkeys else ""
        peer = fig(r.get(pk), unit) if pk else None
        pname = doc.get("peer") or {
            "reference": "pure-Python reference"}.get(pk, pk)
        ratio = (ours["median"] / peer["median"]
                 if ours and peer and peer["median"] > 0 else None)
        status = "ok" if peer else ("peer fails" if pk else "ours only")
        note = r.get("note", "")
        target = r.get("target") if isinstance(r.get("target"), dict) \
            else None
        if target and target.get("text"):
            note = (note + "; " if note else "") + "target: " + \
                target["text"]
        rows.append(make_row(label, name, unit, name, ours, pname, "",
                             pk and name, peer, ratio, note,
                             status, True, label))
        pw = [float(x) for x in (r.get("pairwise") or [])
              if isinstance(x, (int, float)) and x > 0]
        if peer and pw:
            rows[-1].update(ratio_stats(
                pw, float(target["max_ratio"])
                if target and target.get("max_ratio") else None))
            rows[-1]["ratio_of_medians"] = ratio
    com = ["%s: %s" % (k, v) for k, v in doc.items() if k != "results"]
    return label, rows, com, "ok"


def run_extra_cmd(spec, timeout):
    """--extra-cmd LABEL=COMMAND: run COMMAND once (a shell-like word list);
    `{out}` in it is replaced by a temporary file that is read afterwards,
    else its standard output is read.  A failure makes the extra
    unavailable, never the run."""
    import shlex
    import tempfile
    label, _, cmdline = spec.partition("=")
    fd, out = tempfile.mkstemp(prefix="ct-extra-")
    os.close(fd)
    try:
        cmd = [w.replace("{out}", out) for w in shlex.split(cmdline)]
        text, st = run(cmd, timeout)
        if "{out}" in cmdline:
            with open(out, encoding="utf-8", errors="replace") as f:
                text = f.read()
        if not text.strip():
            return label, [], [], "unavailable (%s; no output)" % st
        lab, rows, com, xst = parse_extra(label, text)
        if st != "ok":
            xst = "partial (%s)" % st
        return lab, rows, com, xst
    finally:
        os.unlink(out)


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def pairwise(ours, peer, prog, need):
    """The ratio of a row: ours / peer for each repetition (the median of
    our sub-runs next to that peer's against the median of the peer's; for
    a baseline, of the same processes), then the median, min and max of
    those ratios.  A slow drift
    of the machine moves both figures of a pair alike and cancels out of
    their ratio, where the ratio of two medians could set a figure from a
    quiet minute against one from a busy one.  None when no pair has
    both."""
    po = dict(zip(ours["sample_tags"], ours["samples"]))
    if prog == "base":
        pp = dict(zip(peer["sample_tags"], peer["samples"]))
    else:  # the peer's run (r, "ct") pairs with our run (r, prog)
        pp = {(t[0], prog): v
              for t, v in zip(peer["sample_tags"], peer["samples"])}
    rs = [po[k] / pp[k] for k in sorted(po) if k in pp and pp[k] > 0]
    if not rs:
        return None
    lo, hi = min(rs), max(rs)
    verdict = ("faster" if hi < 1 else "slower" if lo > 1 else
               "no verdict")
    short = len(rs) < need
    if short:
        # A peer that failed part-way has fewer pairs than the run's
        # repetitions: too few for a verdict (outside review).
        verdict = "no verdict"
    out = {"ratio": median(rs), "ratio_min": lo, "ratio_max": hi,
           "pairs": len(rs), "ratios": rs, "verdict": verdict,
           "ratio_of_medians": (ours["median"] / peer["median"]
                                if peer["median"] > 0 else None)}
    if short:
        out["pairs_note"] = "%d of %d pairs" % (len(rs), need)
    # Where a repetition has several sub-runs, also every sub-run pair on
    # its own (sub-run s of ours against the peer's sub-run s of the same
    # repetition: the two adjacent runs of one alternation step).  The
    # repetition's ratio of medians smooths a single odd sub-run away, so
    # this range is wider; it is reported beside the main one, and the
    # verdict by it is the stricter reading.  Baselines share our
    # processes and have no separate sub-runs of their own to pair.
    so = dict(zip(ours["sample_tags"], ours.get("subsamples", [])))
    if prog == "base":
        sp = {}
    else:
        sp = {(t[0], prog): v for t, v in
              zip(peer["sample_tags"], peer.get("subsamples", []))}
    sub = [a / b for k in sorted(so) if k in sp
           and len(so[k]) == len(sp[k]) > 1
           for a, b in zip(so[k], sp[k]) if b > 0]
    if sub:
        slo, shi = min(sub), max(sub)
        out.update({"sub_ratio": median(sub), "sub_ratio_min": slo,
                    "sub_ratio_max": shi, "sub_pairs": len(sub),
                    "sub_verdict": ("faster" if shi < 1 else "slower"
                                    if slo > 1 else "no verdict")})
    return out


def make_row(section, workload, unit, okey, ours, peer, variant, pkey,
             peer_res, ratio, note, status, main, source="suite"):
    return {"section": section, "workload": workload, "unit": unit,
            "ours_key": okey, "ours": ours, "peer": peer,
            "variant": variant, "peer_key": pkey, "peer_result": peer_res,
            "ratio": ratio, "ratio_min": None, "ratio_max": None,
            "pairs": None, "verdict": ("one run" if ratio is not None
                                       else None),
            "note": note, "status": status, "main": main, "source": source}


# ---------------------------------------------------------------------------

def find_programs(a):
    """prog -> (command list or None, reason when None)."""
    bindir = os.path.dirname(os.path.abspath(a.ct_bench))
    progs = {"ct": ([a.ct_bench], None), "cpp": ([a.cpp_bench], None)}
    wanted = (set(a.peers.split(",")) if a.peers else
              {"glib", "go", "rust", "node"})
    for name, opt, default in (
            ("glib", a.glib_bench, os.path.join(bindir, "glib_bench")),
            ("go", a.go_bench, os.path.join(bindir, "go_bench")),
            ("rust", a.rust_bench, os.path.join(bindir, "rust_bench"))):
        path = opt or default
        if name not in wanted:
            progs[name] = (None, "not selected (--peers)")
        elif os.access(path, os.X_OK):
            progs[name] = ([path], None)
        else:
            progs[name] = (None, "not built (%s missing)" % path)
    script = a.node_bench or os.path.join(HERE, "peers", "node",
                                          "node_bench.mjs")
    node = shutil.which(a.node) if a.node else None
    if "node" not in wanted:
        progs["node"] = (None, "not selected (--peers)")
    elif node is None:
        progs["node"] = (None, "node not found")
    elif not os.path.exists(script):
        progs["node"] = (None, "%s missing" % script)
    else:
        progs["node"] = ([node, "--expose-gc", script], None)
    return progs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="few, small repetitions (CI smoke run)")
    ap.add_argument("--ct-bench", default="./ct_bench",
                    help="path of the ct_bench binary")
    ap.add_argument("--cpp-bench", default="./cpp_bench",
                    help="path of the cpp_bench binary")
    ap.add_argument("--glib-bench", default=None,
                    help="path of glib_bench (default: next to ct_bench)")
    ap.add_argument("--go-bench", default=None,
                    help="path of go_bench (default: next to ct_bench)")
    ap.add_argument("--rust-bench", default=None,
                    help="path of rust_bench, the tokio-util peer (default: "
                         "next to ct_bench)")
    ap.add_argument("--node-bench", default=None,
                    help="path of node_bench.mjs (default: "
                         "bench/peers/node/node_bench.mjs)")
    ap.add_argument("--node", default="node", help="the node interpreter")
    ap.add_argument("--peers", default=None,
                    help="optional peers to run, comma-separated (default "
                         "glib,go,rust,node; '-' for none)")
    ap.add_argument("--extra", action="append", default=[],
                    metavar="[LABEL=]FILE",
                    help="include figures from another producer (repeatable)")
    ap.add_argument("--extra-cmd", action="append", default=[],
                    metavar="LABEL=COMMAND",
                    help="run COMMAND once and include its figures; {out} "
                         "in COMMAND names a file it writes (repeatable)")
    ap.add_argument("--out-dir", default=None,
                    help="where results.csv/.json/.md and chart.svg go "
                         "(default: the directory of ct_bench)")
    ap.add_argument("--csv", default=None, help="CSV output path")
    ap.add_argument("--json", default=None, help="JSON output path")
    ap.add_argument("--md", default=None, help="Markdown output path")
    ap.add_argument("--chart", default=None, help="chart (SVG) output path")
    ap.add_argument("--no-chart", action="store_true",
                    help="do not draw the chart")
    ap.add_argument("--reps", type=int, default=0,
                    help="repetitions (default 5, quick 3)")
    ap.add_argument("--only", default=None,
                    help="workload groups, comma-separated: memory check "
                         "fanout chain churn wake poll")
    ap.add_argument("--subruns", type=int, default=0,
                    help="runs of each side per repetition and group, "
                         "alternating (default: per group, see SUBRUNS; "
                         "quick: 1)")
    ap.add_argument("--timeout", type=int, default=0,
                    help="timeout of one program run, in seconds")
    a = ap.parse_args()

    for p in (a.ct_bench, a.cpp_bench):
        if not os.access(p, os.X_OK):
            ap.error("%s is not an executable (build with -DCT_BUILD_BENCH=ON "
                     "and pass --ct-bench/--cpp-bench)" % p)
    out_dir = a.out_dir or os.path.dirname(os.path.abspath(a.ct_bench))
    stem = "results-quick" if a.quick else "results"
    csv_path = a.csv or os.path.join(out_dir, stem + ".csv")
    json_path = a.json or os.path.join(out_dir, stem + ".json")
    md_path = a.md or os.path.join(out_dir, stem + ".md")
    chart_path = a.chart or os.path.join(
        out_dir, "chart-quick.svg" if a.quick else "chart.svg")
    timeout = a.timeout or (60 if a.quick else 300)
    reps = a.reps if a.reps > 0 else (3 if a.quick else 5)
    if a.peers == "-":
        a.peers = "none"

    bargs = ["--reps", "1"]
    if a.quick:
        bargs.append("--quick")
    groups = a.only.split(",") if a.only else list(GROUPS)
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        ap.error("--only: unknown group(s) %s (groups: %s)"
                 % (",".join(bad), " ".join(GROUPS)))
    subruns = {g: (a.subruns if a.subruns > 0 else
                   1 if a.quick else SUBRUNS[g]) for g in groups}

    progs = find_programs(a)
    order = [p for p in ("ct", "cpp", "glib", "go", "rust", "node")
             if progs[p][0] is not None]
    status = {p: ("ok" if progs[p][0] else "unavailable: " + progs[p][1])
              for p in progs}
    comments = {p: [] for p in progs}
    # prog -> key -> [one value per run, with its tag and sub-run]
    samples = {p: {} for p in progs}
    # (prog, group) whose first run printed no figure: that peer has no
    # such workload (Go and tokio have no poll, Node no wake-up), so that
    # pair is not run again.
    empty = set()
    printed = set()  # (prog, group) that printed figures at least once
    spent = {}  # (prog, group) -> seconds of its runs, for the run's meta

    load_before = loadavg()
    busy_before = cpu_busy()
    started = datetime.datetime.now(datetime.timezone.utc)
    # Repetition r, group g, peer p: `subruns[g]` runs of ours and as many
    # of p's, each a fresh process running group g alone, alternating
    # (ours, p), (p, ours), (ours, p) ... and continuing the alternation
    # from one repetition to the next, so that the two members of a pair
    # run seconds apart, never minutes.  The peers' order rotates from one
    # repetition to the next.  A run's values are tagged (repetition,
    # partner); the repetition's figure of each side is the median of its
    # sub-runs (see the docstring).
    peers_order = [p for p in order if p != "ct"] or [None]
    # Who goes first alternates per (group, peer) pair, continuing from one
    # repetition to the next: over a run each side of every pair goes
    # first in half its steps (one more for the side that starts when the
    # count is odd),
    # whatever the number of groups, peers and sub-runs.  (One global
    # counter balanced the run as a whole but could put the same side
    # first in every repetition of a one-sub-run group.)
    # The first step of each pair: ours first for even pair numbers, the
    # peer first for odd ones, so that across pairs neither side goes
    # first more often when a pair's own count of steps is odd.
    flips = {(g, p): (gi * len(peers_order) + pi) % 2
             for gi, g in enumerate(groups)
             for pi, p in enumerate(peers_order)}
    for r in range(reps):
        k = r % len(peers_order)
        for g in groups:
            for peer in peers_order[k:] + peers_order[:k]:
                if (peer, g) in empty:
                    continue
                for s_ in range(subruns[g]):
                    flip = flips.get((g, peer), 0)
                    flips[(g, peer)] = flip + 1
                    pair = [p for p in (("ct", peer) if flip % 2 == 0
                                        else (peer, "ct")) if p is not None]
                    for name in pair:
                        if status[name] != "ok":
                            continue  # a program that failed is not rerun
                        t_run = time.monotonic()
                        text, st = run(progs[name][0] + bargs +
                                       ["--only", g], timeout)
                        spent[(name, g)] = (spent.get((name, g), 0.0) +
                                            time.monotonic() - t_run)
                        res, com = parse(text)
                        if st != "ok":
                            status[name] = "%s (in repetition %d)" % (
                                st, r + 1)
                            if name not in REQUIRED:
                                status[name] = ("unavailable: " +
                                                status[name])
                        elif not res and name != "ct":
                            if (name, g) in printed:
                                # It printed figures before: this is a
                                # failure, not a missing workload; say so
                                # instead of dropping the peer silently.
                                status[name] = (
                                    "unavailable: printed no figures for "
                                    "%s in repetition %d" % (g, r + 1))
                            empty.add((name, g))
                            break  # nothing to pair ours with
                        if res:
                            printed.add((name, g))
                        if not comments[name]:
                            comments[name] = com
                        for key, val in res.items():
                            val["tag"] = (r, peer if name == "ct" else "ct")
                            val["sub"] = s_
                            samples[name].setdefault(key, []).append(val)
                    if (peer, g) in empty:
                        break
    elapsed = (datetime.datetime.now(datetime.timezone.utc) -
               started).total_seconds()
    load_after = loadavg()

    # A repetition's figure of one side: the median of its sub-runs.  A
    # figure's cell: the median, min and max of those per-repetition
    # figures (ours: over every repetition next to every peer).
    figs = {}
    for name, keys in samples.items():
        figs[name] = {}
        for key, vals in keys.items():
            per = {}
            for v in vals:
                per.setdefault(tuple(v["tag"]), []).append(v["median"])
            tags = sorted(per)
            reps_v = [median(per[t]) for t in tags]
            xs = sorted(reps_v)
            figs[name][key] = {"unit": vals[0]["unit"], "median": median(xs),
                               "min": xs[0], "max": xs[-1], "reps": len(xs),
                               "samples": reps_v,
                               "sample_tags": tags,
                               "subsamples": [per[t] for t in tags],
                               "note": vals[0]["note"]}
            for v in vals:  # keep a warning printed by any run
                if "WARNING" in v["note"]:
                    figs[name][key]["note"] = v["note"]
    figs["base"] = figs["ct"]  # baselines are measured by ct_bench
    status["base"] = status["ct"]

    rows, used = [], set()
    for sec, label, okey, ratio_ok, comps in WORKLOADS:
        ours = figs["ct"].get(okey)
        if ours is None:
            continue  # not selected (--only), or ct_bench failed
        used.add(("ct", okey))
        for prog, pkey, variant, note, is_main in comps:
            pname = PEER_NAME[prog]
            if pkey is None:
                rows.append(make_row(sec, label, ours["unit"], okey, ours,
                                     pname, variant, "", None, None, note,
                                     "n/a", is_main))
                continue
            peer = figs[prog].get(pkey)
            used.add((prog if prog != "base" else "ct", pkey))
            if peer is None:
                st = (status[prog] if status[prog] != "ok"
                      else "missing: the peer printed no %s" % pkey)
                rows.append(make_row(sec, label, ours["unit"], okey, ours,
                                     pname, variant, pkey, None, None, note,
                                     st if st.startswith("unavailable")
                                     else "missing", is_main))
                if not st.startswith("unavailable"):
                    rows[-1]["note"] = note + "; " + st
                continue
            if ours["unit"] != peer["unit"]:
                print("run.py: unit mismatch for %s/%s" % (okey, pkey),
                      file=sys.stderr)
            pr = pairwise(ours, peer, prog, reps) if ratio_ok else None
            full = note
            if peer["note"]:
                full += "; %s: %s" % (pname, peer["note"])
            if ours["note"]:
                full += "; ours: " + ours["note"]
            st = "ok"
            if status[prog] != "ok":  # figures from before it failed
                st = "partial"
                full += "; partial: " + status[prog]
            rows.append(make_row(sec, label, ours["unit"], okey, ours, pname,
                                 variant, pkey, peer, None, full, st,
                                 is_main))
            if pr is not None:
                rows[-1].update(pr)
    # Anything a program printed that the table does not name (other than
    # the wake-up distribution, which goes to the chart): a row of its own.
    for pname, res in figs.items():
        if pname == "base":
            continue
        for key, r in res.items():
            if (pname, key) in used or is_dist_key(key):
                continue
            ours = pname == "ct"
            rows.append(make_row("other", key, r["unit"],
                                 key if ours else "", r if ours else None,
                                 "" if ours else PEER_NAME[pname], "",
                                 "" if ours else key,
                                 None if ours else r, None, r["note"],
                                 "ours only" if ours else "peer only", False))

    extras = []
    for spec in a.extra + ["cmd:" + c for c in a.extra_cmd]:
        if spec.startswith("cmd:"):
            label, xrows, xcom, xst = run_extra_cmd(spec[4:], 2 * timeout)
        else:
            label, xrows, xcom, xst = read_extra(spec)
        extras.append({"label": label, "spec": spec, "status": xst,
                       "comments": xcom})
        rows.extend(xrows)
        if xst != "ok":
            print("run.py: extra %s: %s" % (label, xst), file=sys.stderr)

    elapsed = (datetime.datetime.now(datetime.timezone.utc) -
               started).total_seconds()
    mode = "quick" if a.quick else "full"
    versions = {p: [c.split(":", 1)[1].strip() for c in comments[p]
                    if c.startswith("version:")] for p in comments}
    meta = {"mode": mode, "reps": reps, "started": started.isoformat(),
            "elapsed_s": round(elapsed, 2), "cpus": os.cpu_count(),
            "kernel": platform.release(), "cpu": cpu_model(),
            "cpu_busy_before": busy_before,
            "loadavg_before": load_before, "loadavg_after": load_after,
            "config": {p: [c for c in comments[p]
                           if not c.startswith("version:")]
                       for p in comments},
            "versions": versions,
            "status": {p: s for p, s in status.items() if p != "base"},
            "method": {"groups": groups, "subruns": subruns,
                       "seconds": {"%s/%s" % k: round(v, 2)
                                   for k, v in sorted(spent.items())}},
            "extras": extras}
    print_table(rows, meta, busy_before)
    write_files(rows, figs, meta, csv_path, json_path, md_path)
    print("wrote %s, %s and %s" % (csv_path, json_path, md_path))
    if not a.no_chart:
        try:
            import chart  # bench/chart.py, next to this file
            msg = chart.draw(json_path, chart_path)
        except Exception as e:  # a chart failure must not fail the run
            msg = "chart not drawn: %s" % e
        print(msg)
    return 0 if all(status[p] == "ok" for p in REQUIRED) else 1


if __name__ == "__main__":
    sys.exit(main())
