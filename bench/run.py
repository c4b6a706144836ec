#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Run the libcanceltoken benchmark suite and join its two halves.

ct_bench measures libcanceltoken, plus raw baselines in the same process.
cpp_bench measures C++20 <stop_token>.  Each repetition is one fresh process
of each binary, run with --reps 1, and the two binaries take turns:
ct, cpp, then cpp, ct, and so on.  They never run at the same time, so
they do not compete for the CPUs.  A slow drift in machine load therefore
hits both sides alike, and every memory figure starts from a fresh heap.

The binaries print `key,unit,median,min,max,note` lines.  This script
collects those lines over the repetitions and takes each figure's median,
min and max.  It pairs each of our figures with its C++ (or baseline)
counterpart, prints a table and writes results.csv and results.json.
It builds nothing itself and needs only the standard library.  It reports
figures and asserts nothing about them.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time

# The table: (section, workload, our key, peer program, peer key, peer
# description, ratio meaningful?).  Peer program "cpp" is cpp_bench;
# "ct" means a baseline measured by ct_bench in the same process.
EMUL = "C++ emulated chain (*)"
FOOTNOTE = ("(*) C++ has no chained tokens.  A child is emulated the way C++ "
            "code does it: its own std::stop_source plus a std::stop_callback "
            "on the parent's token that calls request_stop() on the child's "
            "source.  Stopping the root of such a chain recurses once per "
            "link, so cpp_bench runs the deep chain on a 512 MiB stack.")
ROWS = [
    ("check", "check, plain token", "check.plain", "cpp", "check.plain",
     "vs C++ stop_token::stop_requested()", True),
    ("check", "check, chained depth 10", "check.depth10", "cpp",
     "check.depth10", "vs " + EMUL, True),
    ("check", "check, chained depth 100", "check.depth100", "cpp",
     "check.depth100", "vs " + EMUL, True),
    ("check", "check, chained depth 10000", "check.depth10000", "cpp",
     "check.depth10000", "vs " + EMUL, True),
    # the fan-out rows are generated below: see FANOUT
    ("chain", "deep chain: create link", "chain.create", "cpp", "chain.create",
     "vs " + EMUL, True),
    ("chain", "deep chain: trigger root", "chain.trigger", "cpp",
     "chain.trigger", "vs C++ emulated chain (request_stop recurses per link)",
     True),
    ("chain", "deep chain: destroy link", "chain.destroy", "cpp",
     "chain.destroy", "vs C++ emulated chain", True),
    ("churn", "churn: child create+destroy", "churn", "cpp", "churn",
     "vs C++ Child on the stack (1 allocation)", True),
    ("churn", "churn: child create+destroy", "churn", "cpp", "churn_heap",
     "vs C++ Child on the heap (2 allocations)", True),
    ("churn", "churn: RSS delta over loop", "churn.rss", "cpp", "churn.rss",
     "should be ~0 on both sides", False),
    ("churn", "churn: RSS delta over loop", "churn.rss", "cpp",
     "churn_heap.rss", "vs C++ heap Child; should be ~0 on both sides",
     False),
    ("churn", "churn: chain_n(n=1) create+destroy", "churn_chain1", "cpp",
     "churn", "vs C++ Child on the stack", True),
    ("churn", "churn: chain_n(n=1) RSS delta", "churn_chain1.rss", "cpp",
     "churn.rss", "should be ~0 on both sides", False),
    ("memory", "memory per live child (RSS)", "memory.child", "cpp",
     "memory.child", "vs C++ heap Child", True),
    # the wake-up rows are generated below: see WAKE
    ("poll", "ct_poll, ready pipe", "poll.ct", "ct", "poll.plain",
     "vs baseline plain poll(2) on the pipe (same process)", True),
    ("poll", "ct_poll, ready pipe", "poll.ct", "cpp", "poll.cpp",
     "vs C++ stop_requested() + poll({pipe, stop eventfd})", True),
]


# Fan-out: (figure, label, peer description), for each of our two APIs.
# "fresh heap": children in address order; "recycled heap": scattered by
# the random-order destroy of the previous generation (bench_util.h).
FANOUT = [
    ("create", "create child, fresh heap",
     "vs C++ heap Child (stop_source + stop_callback); includes first touch "
     "of the pages"),
    ("trigger", "trigger root, fresh heap",
     "vs C++ request_stop() running 1 callback per child; children in "
     "address order"),
    ("destroy_random", "destroy, random order", "vs C++ heap Child"),
    ("create_recycled", "create child, recycled heap",
     "vs C++ heap Child; addresses scattered by the random destroy"),
    ("trigger_recycled", "trigger root, recycled heap",
     "vs C++ request_stop(); children scattered in memory"),
    ("destroy", "destroy, creation order", "vs C++ heap Child"),
]
_i = [r[0] for r in ROWS].index("chain")
ROWS[_i:_i] = [("fanout", "fan-out %s: %s" % (api, label),
                "%s.%s" % (pfx, fig), "cpp", "fanout." + fig, desc, True)
               for api, pfx in (("new_child", "fanout"),
                                ("chain_n(1)", "fanout_chain1"))
               for fig, label, desc in FANOUT]


# Wake-up latency: (our figure, peer program, peer figure, what, peer
# description), in two regimes (bench_util.h, "CPU placement"): waiter and
# trigger on two CPUs (keys wake.*) or on one (keys wake_1cpu.*).
WAKE = [
    ("wait", "cpp", "wait", "ct_token_wait",
     "vs C++ condition_variable_any::wait(lock, stop_token, pred)"),
    ("wait", "ct", "condvar", "ct_token_wait",
     "vs baseline pthread mutex+cond+flag, signal under the mutex (same "
     "process)"),
    ("wait", "ct", "condvar_unl", "ct_token_wait",
     "vs baseline pthread mutex+cond+flag, signal after unlock (same "
     "process)"),
    ("epoll", "cpp", "epoll", "epoll on ct_token_fd",
     "vs C++ epoll on an eventfd written by a stop_callback"),
]
_i = [r[0] for r in ROWS].index("poll")
ROWS[_i:_i] = [("wake", "wake %s: %s %s" % (regime, what, pct),
                "%s.%s.%s" % (pfx, ours, pct), prog,
                "%s.%s.%s" % (pfx, peer, pct), desc, True)
               for pfx, regime in (("wake", "2 CPUs"), ("wake_1cpu", "1 CPU"))
               for ours, prog, peer, what, desc in WAKE
               for pct in ("p50", "p99")]


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


def run(path, args, timeout):
    """Run one benchmark binary; its stderr (progress) goes to ours."""
    cmd = [path] + args
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
        print("run.py: %s: %s (results so far are kept)" % (path, status),
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="few, small repetitions (CI smoke run)")
    ap.add_argument("--ct-bench", default="./ct_bench",
                    help="path of the ct_bench binary")
    ap.add_argument("--cpp-bench", default="./cpp_bench",
                    help="path of the cpp_bench binary")
    ap.add_argument("--out-dir", default=None,
                    help="where results.csv/.json go (default: the "
                         "directory of ct_bench)")
    ap.add_argument("--csv", default=None, help="CSV output path")
    ap.add_argument("--json", default=None, help="JSON output path")
    ap.add_argument("--reps", type=int, default=0,
                    help="repetitions (default 5, quick 3)")
    ap.add_argument("--only", default=None,
                    help="workload groups, comma-separated: memory check "
                         "fanout chain churn wake poll")
    ap.add_argument("--timeout", type=int, default=0,
                    help="timeout of one binary run, in seconds")
    a = ap.parse_args()

    for p in (a.ct_bench, a.cpp_bench):
        if not os.access(p, os.X_OK):
            ap.error("%s is not an executable (build with -DCT_BUILD_BENCH=ON "
                     "and pass --ct-bench/--cpp-bench)" % p)
    out_dir = a.out_dir or os.path.dirname(os.path.abspath(a.ct_bench))
    stem = "results-quick" if a.quick else "results"
    csv_path = a.csv or os.path.join(out_dir, stem + ".csv")
    json_path = a.json or os.path.join(out_dir, stem + ".json")
    timeout = a.timeout or (60 if a.quick else 300)
    reps = a.reps if a.reps > 0 else (3 if a.quick else 5)

    bargs = ["--reps", "1"]
    if a.quick:
        bargs.append("--quick")
    if a.only:
        bargs += ["--only", a.only]

    load_before = loadavg()
    busy_before = cpu_busy()
    started = datetime.datetime.now(datetime.timezone.utc)
    paths = {"ct": a.ct_bench, "cpp": a.cpp_bench}
    status = {"ct": "ok", "cpp": "ok"}
    comments = {"ct": [], "cpp": []}
    samples = {"ct": {}, "cpp": {}}  # prog -> key -> [one result per rep]
    for r in range(reps):
        for name in (("ct", "cpp") if r % 2 == 0 else ("cpp", "ct")):
            if status[name] != "ok":
                continue  # a binary that failed once is not run again
            text, st = run(paths[name], bargs, timeout)
            if st != "ok":
                status[name] = "%s (in repetition %d)" % (st, r + 1)
            res, com = parse(text)
            if not comments[name]:
                comments[name] = com
            for key, val in res.items():
                samples[name].setdefault(key, []).append(val)
    elapsed = (datetime.datetime.now(datetime.timezone.utc) -
               started).total_seconds()
    load_after = loadavg()

    # median, min and max over the repetitions of each figure
    progs = {}
    for name, keys in samples.items():
        progs[name] = {}
        for key, vals in keys.items():
            xs = sorted(v["median"] for v in vals)
            n = len(xs)
            med = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
            progs[name][key] = {"unit": vals[0]["unit"], "median": med,
                                "min": xs[0], "max": xs[-1], "reps": n,
                                "samples": [v["median"] for v in vals],
                                "note": vals[0]["note"]}
            for v in vals:  # keep a warning printed by any repetition
                if "WARNING" in v["note"]:
                    progs[name][key]["note"] = v["note"]

    rows, used = [], set()
    for sec, label, okey, pprog, pkey, pdesc, ratio_ok in ROWS:
        ours = progs["ct"].get(okey)
        peer = progs[pprog].get(pkey)
        if ours is None and peer is None:
            continue
        used.add(("ct", okey))
        used.add((pprog, pkey))
        unit = (ours or peer)["unit"]
        if ours and peer and ours["unit"] != peer["unit"]:
            print("run.py: unit mismatch for %s/%s" % (okey, pkey),
                  file=sys.stderr)
        ratio = None
        if ratio_ok and ours and peer and peer["median"] > 0:
            ratio = ours["median"] / peer["median"]
        notes = [pdesc]
        if ours and ours["note"]:
            notes.append("ours: " + ours["note"])
        if peer and peer["note"] and pprog == "cpp":
            notes.append("C++: " + peer["note"])
        # The printed table keeps the peer description and any warning; the
        # CSV/JSON files keep every note in full.
        short = pdesc
        for res in (ours, peer):
            if res and "WARNING" in res["note"]:
                short += "; " + res["note"][res["note"].index("WARNING"):]
        rows.append({"section": sec, "workload": label, "unit": unit,
                     "ours_key": okey, "ours": ours,
                     "peer": "C++" if pprog == "cpp" else "baseline",
                     "peer_key": pkey, "peer_result": peer,
                     "ratio": ratio, "note": "; ".join(notes),
                     "short_note": short})
    # Anything a binary printed that the table does not name: show it alone.
    for pname, res in progs.items():
        for key, r in res.items():
            if (pname, key) in used:
                continue
            rows.append({"section": "other", "workload": key,
                         "unit": r["unit"],
                         "ours_key": key if pname == "ct" else "",
                         "ours": r if pname == "ct" else None,
                         "peer": "C++" if pname == "cpp" else "",
                         "peer_key": key if pname == "cpp" else "",
                         "peer_result": r if pname == "cpp" else None,
                         "ratio": None, "note": r["note"],
                         "short_note": r["note"]})

    # ---- table ----
    head = ["workload", "unit", "ours median [min..max]",
            "C++ (or baseline) median [min..max]", "ratio", "note"]
    table = [head]
    for r in rows:
        table.append([r["workload"], r["unit"], cell(r["ours"]),
                      cell(r["peer_result"]),
                      "%.2f" % r["ratio"] if r["ratio"] is not None else "-",
                      r["short_note"]])
    widths = [max(len(t[i]) for t in table) for i in range(len(head) - 1)]
    mode = "quick" if a.quick else "full"
    print()
    print("libcanceltoken vs C++20 <stop_token> -- %s mode, %s, %d CPUs, "
          "Linux %s, %s" % (mode, started.strftime("%Y-%m-%d %H:%M UTC"),
                             os.cpu_count() or 0, platform.release(),
                             cpu_model()))
    for name in ("ct", "cpp"):
        for c in comments[name]:
            print("  " + c.replace(" reps=1", ""))  # run.py repeats instead
    print("  CPUs busy just before the run: %s; load average (1 min) "
          "before %s, after %s (our own run adds up to ~1-2)"
          % ("?" if busy_before is None else "%.0f%%" % (100 * busy_before),
             load_before, load_after))
    if busy_before is not None and busy_before > 0.25:
        print("  WARNING: the machine was busy when the run started; the "
              "figures may be noisy")
    print("  each cell: median [min..max] over %d repetitions (one fresh "
          "process of each binary per repetition, taking turns); ratio = "
          "ours / peer median, same run (< 1: ours faster or smaller)"
          % reps)
    print()
    for i, t in enumerate(table):
        print("  ".join(t[j].ljust(widths[j]) if j < len(widths) else t[j]
                        for j in range(len(t))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  ----")
    print()
    print(FOOTNOTE)
    for name in ("ct", "cpp"):
        if status[name] != "ok":
            print("WARNING: %s_bench %s; its figures are missing or partial"
                  % (name, status[name]))
    print("total run time %.1f s" % elapsed)

    # ---- files ----
    os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["section", "workload", "unit", "ours_key", "ours_median",
                    "ours_min", "ours_max", "peer", "peer_key", "peer_median",
                    "peer_min", "peer_max", "ratio", "note"])
        for r in rows:
            o, p = r["ours"] or {}, r["peer_result"] or {}
            w.writerow([r["section"], r["workload"], r["unit"], r["ours_key"],
                        o.get("median", ""), o.get("min", ""),
                        o.get("max", ""), r["peer"], r["peer_key"],
                        p.get("median", ""), p.get("min", ""),
                        p.get("max", ""),
                        "%.4f" % r["ratio"] if r["ratio"] is not None else "",
                        r["note"]])
    meta = {"mode": mode, "reps": reps, "started": started.isoformat(),
            "elapsed_s": round(elapsed, 2), "cpus": os.cpu_count(),
            "kernel": platform.release(), "cpu": cpu_model(),
            "cpu_busy_before": busy_before,
            "loadavg_before": load_before, "loadavg_after": load_after,
            "config": comments, "status": status}
    with open(json_path, "w") as f:
        json.dump({"meta": meta,
                   "rows": [{k: v for k, v in r.items() if k != "short_note"}
                            for r in rows],
                   "raw": progs}, f, indent=1)
    print("wrote %s and %s" % (csv_path, json_path))
    return 0 if all(s == "ok" for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
