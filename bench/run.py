#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Run the libcanceltoken benchmark suite against its peers, in one run.

Programs, each printing `key,unit,median,min,max,note` lines
(bench_util.h):
  ct    ct_bench: libcanceltoken, plus raw baselines in the same process
  cpp   cpp_bench: C++20 <stop_token>
  glib  glib_bench: GLib's GCancellable            (optional peer)
  go    go_bench: Go's package context             (optional peer)
  node  node_bench.mjs: Node's AbortController     (optional peer)
Each repetition runs one fresh process of every program with --reps 1;
the programs take turns in a rotating order and never run at the same
time, so a slow drift in machine load hits all of them alike, and every
memory figure starts from a fresh heap.  ct and cpp must run; a peer that
is not built or fails is reported as unavailable and the run goes on.

Figures produced elsewhere join the table through --extra files (the
token server's net_bench, the Python package's benchmark): see
bench/README.md for their format.

This script pairs each of our figures with its counterpart in every peer,
prints one table (ours, peer, ratio = ours / peer from the same run),
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

# Display names of the programs, in column order.
PEERS = [("cpp", "C++"), ("glib", "GLib"), ("go", "Go"), ("node", "Node"),
         ("base", "baseline")]
PEER_NAME = dict(PEERS)
REQUIRED = ("ct", "cpp")

FOOTNOTES = [
    "Chaining.  C++ and GLib have no chained tokens; a child is linked the "
    "way their users do it: its own std::stop_source plus a "
    "std::stop_callback on the parent that calls request_stop() on it (C++), "
    "its own GCancellable plus a handler connected with "
    "g_cancellable_connect() on the parent that cancels it (GLib).  Stopping "
    "the root of such a chain recurses once per link (both run the deep "
    "chain on a big stack).  Go's WithCancel and Node's AbortSignal.any() "
    "chain natively; any() flattens, so every link of a Node chain depends "
    "on the root directly.",
    "Sizes.  Ours, C++, GLib and Go use n = 1,000,000 for fan-out, churn "
    "and memory and depth 100,000 for the chain.  Node uses a tenth (its "
    "any() child costs microseconds and kilobytes), and its listener "
    "fan-out a hundredth (EventTarget's addEventListener is O(n) per "
    "listener).  Figures are per child, so they compare; the n is in each "
    "row's note.",
    "Garbage collectors.  Go and Node have no destroy step: dropped tokens "
    "are reclaimed by the collector, whose cost lands in create and churn.  "
    "Their memory figures include the collector's heap overhead.",
    "Wake-up.  '2 CPUs': the waiter and the trigger run on two CPUs; '1 "
    "CPU': on one.  Go cannot pin goroutines: its 2-CPU figure locks each "
    "goroutine to its own pinned OS thread; its 1-CPU figure runs "
    "GOMAXPROCS=1, where a wake-up is a goroutine switch in user space.  "
    "Node has no threads that share a signal: N/A.",
]

# ---------------------------------------------------------------------------
# The table.  WORKLOADS: (section, label, our key, ratio meaningful?,
# [comparisons]); a comparison is (peer program, peer key or None for N/A,
# variant label or "", note, main?).  "base" means a baseline measured by
# ct_bench in the same process.  main=False marks an alternative form of a
# peer, kept in the long table and in the files but not in the Markdown
# summary's columns.
NA_GC = "garbage-collected: no destroy step"


def cmp(prog, key, note, variant="", main=True):
    return (prog, key, variant, note, main)


def na(prog, why):
    return (prog, None, "", why, True)


CHECK = [cmp("cpp", "check.%s", "stop_token::stop_requested()"),
         cmp("glib", "check.%s", "g_cancellable_is_cancelled()"),
         cmp("go", "check.%s", "ctx.Err() (a mutex)", "Err"),
         cmp("go", "check_done.%s", "select on ctx.Done() with default",
             "Done", main=False),
         cmp("node", "check.%s", "signal.aborted (the getter's inline cache "
             "is polymorphic once any() signals exist: ~1 ns before)")]
WORKLOADS = []
for _d, _label in (("plain", "check, plain token"),
                   ("depth10", "check, chained depth 10"),
                   ("depth100", "check, chained depth 100"),
                   ("depth10000", "check, chained depth 10000")):
    WORKLOADS.append(("check", _label, "check." + _d, True,
                      [(p, k % _d if k else None, v, n, m)
                       for p, k, v, n, m in CHECK]))

FANOUT = [
    ("create", "create child, fresh heap"),
    ("trigger", "trigger root, fresh heap"),
    ("destroy_random", "destroy, random order"),
    ("create_recycled", "create child, recycled heap"),
    ("trigger_recycled", "trigger root, recycled heap"),
    ("destroy", "destroy, creation order"),
]
for _fig, _label in FANOUT:
    _gc = _fig.startswith("destroy")
    WORKLOADS.append(("fanout", "fan-out: " + _label, "fanout." + _fig, True, [
        cmp("cpp", "fanout." + _fig, "child = stop_source + stop_callback"),
        cmp("glib", "fanout." + _fig,
            "child = GCancellable + cancelled handler"),
        na("go", NA_GC) if _gc else
        cmp("go", "fanout." + _fig, "child = WithCancel(root)"),
        na("node", NA_GC) if _gc else
        cmp("node", "fanout." + _fig, "child = AbortSignal.any([root])",
            "any"),
    ] + ([] if _gc else [
        cmp("node", "fanout_listener." + _fig,
            "child = AbortController + 'abort' listener on root",
            "listener", main=False)])))
for _fig, _label in FANOUT:
    WORKLOADS.append(("fanout", "fan-out chain_n(1): " + _label,
                      "fanout_chain1." + _fig, True, [
                          cmp("cpp", "fanout." + _fig,
                              "child = stop_source + stop_callback")]))
for _fig, _label in (("create", "create link"), ("trigger", "trigger root"),
                     ("destroy", "destroy link")):
    _gc = _fig == "destroy"
    WORKLOADS.append(("chain", "deep chain: " + _label, "chain." + _fig, True, [
        cmp("cpp", "chain." + _fig, "emulated chain; stop recurses per link"),
        cmp("glib", "chain." + _fig,
            "handler-linked chain; cancel nests per link"),
        na("go", NA_GC) if _gc else
        cmp("go", "chain." + _fig, "WithCancel chain"),
        na("node", NA_GC) if _gc else
        cmp("node", "chain." + _fig,
            "AbortSignal.any chain (flattened), depth 10,000"),
    ]))
_churn = [
    cmp("cpp", "churn", "Child on the stack (1 allocation)", "stack"),
    cmp("cpp", "churn_heap", "Child on the heap (2 allocations)", "heap",
        main=False),
    cmp("glib", "churn", "new + connect; disconnect + unref"),
    cmp("go", "churn", "WithCancel(parent) + cancel()"),
    cmp("node", "churn", "AbortSignal.any([parent]), dropped", "any"),
    cmp("node", "churn_listener",
        "AbortController + listener; removeEventListener", "listener",
        main=False),
]
WORKLOADS.append(("churn", "churn: child create+destroy", "churn", True,
                  _churn))
WORKLOADS.append(("churn", "churn: RSS delta over the loop", "churn.rss",
                  False, [(p, k + ".rss", v, "should stay ~0", m)
                          for p, k, v, n, m in _churn]))
WORKLOADS.append(("churn", "churn: chain_n(1) create+destroy", "churn_chain1",
                  True, [cmp("cpp", "churn", "Child on the stack", "stack")]))
WORKLOADS.append(("churn", "churn: chain_n(1) RSS delta", "churn_chain1.rss",
                  False, [cmp("cpp", "churn.rss", "should stay ~0",
                              "stack")]))
WORKLOADS.append(("churn", "churn: child with a deadline (1 h)",
                  "churn_deadline", True, [
                      na("cpp", "<stop_token> has no deadlines"),
                      na("glib", "GCancellable has no deadline (it takes a "
                         "GSource on a running GMainContext)"),
                      cmp("go", "churn_deadline",
                          "WithTimeout(parent, 1h) + cancel()"),
                      na("node", "AbortSignal.timeout() cannot be "
                         "cancelled: its timer lives until it fires"),
                  ]))
WORKLOADS.append(("churn", "churn: deadline RSS delta", "churn_deadline.rss",
                  False, [cmp("go", "churn_deadline.rss", "should stay ~0")]))
for _k, _label, _c, _g, _go, _n in (
        ("token", "memory per live plain token", "std::stop_source (state)",
         "g_cancellable_new()", "WithCancel(Background())",
         "new AbortController()"),
        ("child", "memory per live child of one root", "heap Child",
         "GCancellable + handler", "WithCancel(root)", "AbortSignal.any"),
        ("link", "memory per live chain link", "heap Child",
         "GCancellable + handler", "WithCancel(prev)", "AbortSignal.any")):
    WORKLOADS.append(("memory", _label + " (RSS)", "memory." + _k, True, [
        cmp("cpp", "memory." + _k, _c), cmp("glib", "memory." + _k, _g),
        cmp("go", "memory." + _k, _go), cmp("node", "memory." + _k, _n)]))
NODE_WAKE = "no threads share an AbortSignal"
for _pfx, _regime in (("wake", "2 CPUs"), ("wake_1cpu", "1 CPU")):
    for _pct in ("p50", "p99"):
        WORKLOADS.append(("wake", "wake %s: ct_token_wait %s" % (_regime, _pct),
                          "%s.wait.%s" % (_pfx, _pct), True, [
            cmp("cpp", "%s.wait.%s" % (_pfx, _pct),
                "condition_variable_any::wait(lock, stop_token, pred)"),
            cmp("glib", "%s.wait.%s" % (_pfx, _pct),
                "GCond wait + cancelled handler"),
            cmp("go", "%s.wait.%s" % (_pfx, _pct), "<-ctx.Done()"),
            na("node", NODE_WAKE),
            cmp("base", "%s.condvar.%s" % (_pfx, _pct),
                "pthread mutex+cond+flag, signal under the mutex", "cond"),
            cmp("base", "%s.condvar_unl.%s" % (_pfx, _pct),
                "pthread mutex+cond+flag, signal after unlock",
                "cond, unlocked", main=False),
        ]))
    for _pct in ("p50", "p99"):
        WORKLOADS.append(("wake", "wake %s: epoll on the token fd %s"
                          % (_regime, _pct),
                          "%s.epoll.%s" % (_pfx, _pct), True, [
            cmp("cpp", "%s.epoll.%s" % (_pfx, _pct),
                "epoll on an eventfd written by a stop_callback"),
            cmp("glib", "%s.epoll.%s" % (_pfx, _pct),
                "epoll on g_cancellable_get_fd()"),
            na("go", "a context has no descriptor"),
            na("node", NODE_WAKE),
        ]))
WORKLOADS.append(("poll", "ct_poll on a ready pipe", "poll.ct", True, [
    cmp("cpp", "poll.cpp", "stop_requested() + poll({pipe, stop eventfd})"),
    cmp("glib", "poll.glib",
        "is_cancelled + g_poll({pipe, cancellable fd}), fd made once"),
    cmp("glib", "poll.glib_percall",
        "make_pollfd + g_poll + release_fd per call (as GSocket)", "per call",
        main=False),
    na("go", "a context cannot be polled with a descriptor"),
    na("node", "no blocking poll"),
    cmp("base", "poll.plain2", "poll(2) on {pipe, the token's fd} by hand "
        "(same process): what ct_poll asks of the kernel", "2 fds"),
    cmp("base", "poll.plain", "poll(2) on the pipe alone (same process)",
        "1 fd", main=False),
]))

# Keys that are drawn but not tabled: the rest of the wake-up distribution.
DIST_PCTS = ("p10", "p25", "p50", "p75", "p90", "p95", "p99")


def is_dist_key(key):
    return key.startswith("wake") and key.rsplit(".", 1)[-1] in DIST_PCTS


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


def num(x):
    if x is None:
        return "-"
    a = abs(x)
    if a >= 100:
        return "%.0f" % x
    if a >= 10:
        return "%.1f" % x
    return "%.2f" % x


def cell(r):
    if r is None:
        return "n/a"
    return "%s [%s..%s]" % (num(r["median"]), num(r["min"]), num(r["max"]))


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
    for key, r in res.items():
        if key not in used:
            rows.append(make_row(label, key, r["unit"], key, r, "", "", "",
                                 None, None, r["note"], "ours only", True,
                                 label))
    return label, rows, [c for c in comments if not c.startswith("pair,")], \
        "ok"


def extra_json(label, text):
    """A JSON document {"results": [{"case": NAME, "unit": U, "ours":
    {median, min, max}, "<peer>": {median, min, max}}, ...]}, as the Python
    package's bench.py writes with --json.  The peer is the one entry
    besides "ours" that holds figures ("reference" in bench.py), and
    its display name is the document's "peer" if it has one.  The ratio is
    recomputed as ours / peer, this table's convention."""
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
        pkeys = [k for k in r if k not in ("case", "key", "unit", "ours",
                                            "ratio", "note")]
        pk = pkeys[0] if pkeys else ""
        peer = fig(r.get(pk), unit) if pk else None
        pname = doc.get("peer") or {
            "reference": "pure-Python reference"}.get(pk, pk)
        ratio = (ours["median"] / peer["median"]
                 if ours and peer and peer["median"] > 0 else None)
        status = "ok" if peer else ("peer fails" if pk else "ours only")
        rows.append(make_row(label, name, unit, name, ours, pname, "",
                             pk and name, peer, ratio, r.get("note", ""),
                             status, True, label))
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


def make_row(section, workload, unit, okey, ours, peer, variant, pkey,
             peer_res, ratio, note, status, main, source="suite"):
    return {"section": section, "workload": workload, "unit": unit,
            "ours_key": okey, "ours": ours, "peer": peer,
            "variant": variant, "peer_key": pkey, "peer_result": peer_res,
            "ratio": ratio, "note": note, "status": status, "main": main,
            "source": source}


# ---------------------------------------------------------------------------

def find_programs(a):
    """prog -> (command list or None, reason when None)."""
    bindir = os.path.dirname(os.path.abspath(a.ct_bench))
    progs = {"ct": ([a.ct_bench], None), "cpp": ([a.cpp_bench], None)}
    wanted = set(a.peers.split(",")) if a.peers else {"glib", "go", "node"}
    for name, opt, default in (
            ("glib", a.glib_bench, os.path.join(bindir, "glib_bench")),
            ("go", a.go_bench, os.path.join(bindir, "go_bench"))):
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
    ap.add_argument("--node-bench", default=None,
                    help="path of node_bench.mjs (default: "
                         "bench/peers/node/node_bench.mjs)")
    ap.add_argument("--node", default="node", help="the node interpreter")
    ap.add_argument("--peers", default=None,
                    help="optional peers to run, comma-separated (default "
                         "glib,go,node; '-' for none)")
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
    if a.only:
        bargs += ["--only", a.only]

    progs = find_programs(a)
    order = [p for p in ("ct", "cpp", "glib", "go", "node")
             if progs[p][0] is not None]
    status = {p: ("ok" if progs[p][0] else "unavailable: " + progs[p][1])
              for p in progs}
    comments = {p: [] for p in progs}
    samples = {p: {} for p in progs}  # prog -> key -> [one result per rep]

    load_before = loadavg()
    busy_before = cpu_busy()
    started = datetime.datetime.now(datetime.timezone.utc)
    for r in range(reps):
        k = r % len(order)
        for name in order[k:] + order[:k]:  # rotate who goes first
            if status[name] != "ok":
                continue  # a program that failed once is not run again
            text, st = run(progs[name][0] + bargs, timeout)
            res, com = parse(text)
            if st != "ok":
                status[name] = "%s (in repetition %d)" % (st, r + 1)
                if name not in REQUIRED:
                    status[name] = "unavailable: " + status[name]
            if not comments[name]:
                comments[name] = com
            for key, val in res.items():
                samples[name].setdefault(key, []).append(val)
    elapsed = (datetime.datetime.now(datetime.timezone.utc) -
               started).total_seconds()
    load_after = loadavg()

    # median, min and max over the repetitions of each figure
    figs = {}
    for name, keys in samples.items():
        figs[name] = {}
        for key, vals in keys.items():
            xs = sorted(v["median"] for v in vals)
            n = len(xs)
            med = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
            figs[name][key] = {"unit": vals[0]["unit"], "median": med,
                               "min": xs[0], "max": xs[-1], "reps": n,
                               "samples": [v["median"] for v in vals],
                               "note": vals[0]["note"]}
            for v in vals:  # keep a warning printed by any repetition
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
            ratio = None
            if ratio_ok and peer["median"] > 0:
                ratio = ours["median"] / peer["median"]
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
                                 variant, pkey, peer, ratio, full, st,
                                 is_main))
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


def fmt_ratio(x):
    """Two decimals, or two significant digits below 0.1 (0.0047)."""
    if x is None:
        return "-"
    return "%.2f" % x if x >= 0.1 else "%.2g" % x


def row_cells(r):
    ratio = fmt_ratio(r["ratio"])
    peer = r["peer"] + (" (%s)" % r["variant"] if r["variant"] else "")
    if r["status"] in ("ok", "ours only", "partial"):
        pcell = cell(r["peer_result"]) if r["peer_result"] else "-"
    elif r["status"] == "n/a":
        pcell = "N/A"
    elif r["status"].startswith("unavailable"):
        pcell = "unavailable"
    else:
        pcell = r["status"]
    return peer, pcell, ratio


def short_note(r):
    if r["status"] in ("n/a",) or r["status"].startswith("unavailable"):
        return r["note"] if r["status"] == "n/a" else r["status"]
    n = r["note"].split("; ")[0]
    for res in (r["ours"], r["peer_result"]):
        if res and "WARNING" in res.get("note", ""):
            n += "; " + res["note"][res["note"].index("WARNING"):]
    return n


def print_table(rows, meta, busy_before):
    head = ["workload", "unit", "ours median [min..max]", "peer",
            "peer median [min..max]", "ours/peer", "note"]
    table, last = [head], None
    for r in rows:
        peer, pcell, ratio = row_cells(r)
        same = (r["workload"], r["ours_key"]) == last
        last = (r["workload"], r["ours_key"])
        table.append(["" if same else r["workload"],
                      "" if same else r["unit"],
                      "" if same else cell(r["ours"]),
                      peer, pcell, ratio, short_note(r)])
    widths = [max(len(t[i]) for t in table) for i in range(len(head) - 1)]
    print()
    print("libcanceltoken vs C++ <stop_token>, GLib, Go, Node -- %s mode, %s, "
          "%d CPUs, Linux %s, %s" % (meta["mode"], meta["started"][:16],
                                     meta["cpus"] or 0, meta["kernel"],
                                     meta["cpu"]))
    for p, v in meta["versions"].items():
        for x in v:
            print("  %s: %s" % (p, x))
    print("  CPUs busy just before the run: %s; load average (1 min) "
          "before %s, after %s (our own run adds up to ~1-2)"
          % ("?" if busy_before is None else "%.0f%%" % (100 * busy_before),
             meta["loadavg_before"], meta["loadavg_after"]))
    if busy_before is not None and busy_before > 0.25:
        print("  WARNING: the machine was busy when the run started; the "
              "figures may be noisy")
    print("  each cell: median [min..max] over %d repetitions (one fresh "
          "process of each program per repetition, taking turns); ours/peer "
          "from the same run (< 1: ours faster or smaller)" % meta["reps"])
    print()
    for i, t in enumerate(table):
        print("  ".join(t[j].ljust(widths[j]) if j < len(widths) else t[j]
                        for j in range(len(t))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  ----")
    print()
    for f in FOOTNOTES:
        print("- " + f)
    for p, s in meta["status"].items():
        if s != "ok":
            print("NOTE: %s: %s" % (p, s))
    for x in meta["extras"]:
        if x["status"] != "ok":
            print("NOTE: extra %s: %s" % (x["label"], x["status"]))
    print("total run time %.1f s" % meta["elapsed_s"])


CSV_HEAD = ["section", "workload", "unit", "ours_key", "ours_median",
            "ours_min", "ours_max", "peer", "peer_key", "peer_median",
            "peer_min", "peer_max", "ratio", "note", "variant", "status",
            "main", "source"]


def write_files(rows, figs, meta, csv_path, json_path, md_path):
    for p in (csv_path, json_path, md_path):
        os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEAD)
        for r in rows:
            o, p = r["ours"] or {}, r["peer_result"] or {}
            w.writerow([r["section"], r["workload"], r["unit"], r["ours_key"],
                        o.get("median", ""), o.get("min", ""),
                        o.get("max", ""), r["peer"], r["peer_key"],
                        p.get("median", ""), p.get("min", ""),
                        p.get("max", ""),
                        "%.4f" % r["ratio"] if r["ratio"] is not None else "",
                        r["note"], r["variant"], r["status"],
                        "1" if r["main"] else "0", r["source"]])
    raw = {p: v for p, v in figs.items() if p != "base"}
    with open(json_path, "w") as f:
        json.dump({"format": 2, "meta": meta, "rows": rows, "raw": raw}, f,
                  indent=1)
    with open(md_path, "w") as f:
        f.write(markdown(rows, meta))


def markdown(rows, meta):
    """The summary table: one line per workload, a column per peer with
    'figure (ours/peer)', main comparisons only; then every row."""
    cols = [name for _, name in PEERS]
    out = ["| workload | unit | ours | " + " | ".join(cols) + " |",
           "|---|---|---:|" + "---:|" * len(cols)]
    order, byw = [], {}
    for r in rows:
        if r["source"] != "suite" or r["section"] == "other":
            continue
        k = (r["workload"], r["ours_key"])
        if k not in byw:
            order.append(k)
            byw[k] = {"ours": r["ours"], "unit": r["unit"], "peers": {}}
        if r["main"] and r["peer"] not in byw[k]["peers"]:
            byw[k]["peers"][r["peer"]] = r
    for k in order:
        w = byw[k]
        cells = []
        for c in cols:
            r = w["peers"].get(c)
            if r is None:
                cells.append("")
            elif r["status"] == "n/a":
                cells.append("N/A")
            elif r["status"] not in ("ok", "partial"):
                cells.append("unavailable")
            elif r["ratio"] is not None:
                cells.append("%s (**%s**)" % (num(r["peer_result"]["median"]),
                                               fmt_ratio(r["ratio"])))
            else:
                cells.append(num(r["peer_result"]["median"]))
        out.append("| %s | %s | %s | %s |" % (k[0], w["unit"],
                                              num(w["ours"]["median"]),
                                              " | ".join(cells)))
    extra = [r for r in rows if r["source"] != "suite"]
    if extra:
        out += ["", "| from | figure | unit | ours | peer | peer figure | "
                "ours/peer |", "|---|---|---|---:|---|---:|---:|"]
        for r in extra:
            out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                r["source"], r["workload"], r["unit"],
                num(r["ours"]["median"]) if r["ours"] else "",
                r["peer"], num(r["peer_result"]["median"])
                if r["peer_result"] else "",
                fmt_ratio(r["ratio"]) if r["ratio"] is not None else ""))
    out.append("")
    out.append("Medians over %d runs (%s mode, %s); each peer cell is the "
               "peer's median and, in bold, ours / peer from the same run "
               "(below 1: ours faster or smaller).  Alternative forms of a "
               "peer, minima and maxima are in results.csv."
               % (meta["reps"], meta["mode"], meta["started"][:10]))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
