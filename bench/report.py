# SPDX-License-Identifier: MIT
"""The benchmark's outputs, from the rows run.py builds: the table printed
on the terminal, results.csv, results.json and results.md.  Formatting
only; it runs nothing and asserts nothing about the figures.

Every compared row carries `ratio` (the median, over the repetitions, of
ours / peer taken pairwise within each repetition), `ratio_min`,
`ratio_max`, `pairs` (how many repetitions both sides ran) and `verdict`:
"faster" (every pairwise ratio below 1: ours faster or smaller), "slower"
(every one above 1) or "no verdict" (the range contains 1).  Rows from
other producers (--extra) whose document gives per-round pairwise ratios
(python/bench/bench.py and cross_process.py: ours and the peer interleaved
within the one run) get the same fields from those; a row with a target
also carries `target` (the largest ours / peer it allows) and
`target_verdict` ("met", "missed" or "no verdict", the same rule against
the target instead of 1).  Other extra rows are single figures: their
ratio is of medians and their verdict is "one run"."""

import csv
import json
import os

from workloads import FOOTNOTES, PEERS

NO_VERDICT = "no verdict"


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


def fmt_ratio(x):
    """Two decimals, or two significant digits below 0.1 (0.0047)."""
    if x is None:
        return "-"
    return "%.2f" % x if x >= 0.1 else "%.2g" % x


def ratio_text(r, md=False):
    """'1.08 [0.97..1.21] no verdict', '0.25 [0.24..0.26]', or '1.41' for a
    single run; in Markdown a ratio whose whole range is above 1 (a row we
    lose) is bold."""
    if r.get("ratio") is None:
        return "-"
    med = fmt_ratio(r["ratio"])
    if md and r.get("verdict") == "slower":
        med = "**%s**" % med
    if r.get("ratio_min") is None:
        return med + (" (one run)" if r.get("verdict") == "one run" else "")
    s = "%s [%s..%s]" % (med, fmt_ratio(r["ratio_min"]),
                         fmt_ratio(r["ratio_max"]))
    if r.get("verdict") == NO_VERDICT:
        s += " no verdict" if not md else " *no verdict*"
    if r.get("pairs_note"):
        s += " (%s)" % r["pairs_note"]
    if r.get("target_verdict"):
        # Also as "peer / ours" (how many times faster), the target's terms.
        tv = r["target_verdict"]
        s += "; peer/ours %.3gx [%.3g..%.3g], target >= %.3gx: %s" % (
            1 / r["ratio"], 1 / r["ratio_max"], 1 / r["ratio_min"],
            1 / r["target"], "*%s*" % tv if md else tv)
    return s


def row_cells(r):
    peer = r["peer"] + (" (%s)" % r["variant"] if r["variant"] else "")
    if r["status"] in ("ok", "ours only", "peer only", "partial"):
        pcell = cell(r["peer_result"]) if r["peer_result"] else "-"
    elif r["status"] == "n/a":
        pcell = "N/A"
    elif r["status"].startswith("unavailable"):
        pcell = "unavailable"
    else:
        pcell = r["status"]
    return peer, pcell, ratio_text(r)


def short_note(r):
    if r["status"] in ("n/a",) or r["status"].startswith("unavailable"):
        return r["note"] if r["status"] == "n/a" else r["status"]
    n = r["note"].split("; ")[0]
    for res in (r["ours"], r["peer_result"]):
        if res and "WARNING" in res.get("note", ""):
            n += "; " + res["note"][res["note"].index("WARNING"):]
    return n


def method_text(meta):
    """How the figures were taken, in one paragraph (run.py's method)."""
    m = meta.get("method") or {}
    sub = m.get("subruns") or {}
    many = sorted(g for g, k in sub.items() if k > 1)
    subs = ("; in a repetition each side runs %s (%s) times, alternating, "
            "and its figure is the median of those runs"
            % ("/".join(str(sub[g]) for g in many), " ".join(many))
            if many else "")
    return ("%d repetitions; in each, every workload group runs alone in "
            "fresh processes, every peer right next to ours (A B, then B A, "
            "...)%s; a figure is the median [min..max] over the repetitions "
            "(ours: over every repetition next to every peer)"
            % (meta["reps"], subs))


def print_table(rows, meta, busy_before):
    head = ["workload", "unit", "ours median [min..max]", "peer",
            "peer median [min..max]", "ours/peer [min..max]", "note"]
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
    print("libcanceltoken vs %s -- %s mode, %s, %d CPUs, Linux %s, %s" % (
        ", ".join(n for p, n in PEERS if p != "base"), meta["mode"],
        meta["started"][:16], meta["cpus"] or 0, meta["kernel"],
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
    print("  %s" % method_text(meta))
    print("  ours/peer: the median [min..max] of the pairwise ratios, one per "
          "repetition (< 1: ours faster or smaller); 'no verdict' "
          "when that range contains 1; for the Python and cross-process "
          "rows, one per interleaved round inside their one run; "
          "'target >= Nx: met / missed / no verdict' compares that range "
          "(as peer/ours) with a target; '(one run)': a ratio of medians")
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


# New columns go at the end, so that a reader of the older header keeps
# working (run.py reads its own CSV back with --extra by column name).
CSV_HEAD = ["section", "workload", "unit", "ours_key", "ours_median",
            "ours_min", "ours_max", "peer", "peer_key", "peer_median",
            "peer_min", "peer_max", "ratio", "note", "variant", "status",
            "main", "source", "ratio_min", "ratio_max", "pairs", "verdict",
            "target", "target_verdict", "sub_ratio", "sub_ratio_min",
            "sub_ratio_max", "sub_pairs", "sub_verdict"]


def _f4(x):
    return "%.4f" % x if x is not None else ""


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
                        p.get("max", ""), _f4(r["ratio"]),
                        r["note"], r["variant"], r["status"],
                        "1" if r["main"] else "0", r["source"],
                        _f4(r.get("ratio_min")), _f4(r.get("ratio_max")),
                        r.get("pairs") or "", r.get("verdict") or "",
                        _f4(r.get("target")), r.get("target_verdict") or "",
                        _f4(r.get("sub_ratio")), _f4(r.get("sub_ratio_min")),
                        _f4(r.get("sub_ratio_max")), r.get("sub_pairs") or "",
                        r.get("sub_verdict") or ""])
    raw = {p: v for p, v in figs.items() if p != "base"}
    with open(json_path, "w") as f:
        json.dump({"format": 3, "meta": meta, "rows": rows, "raw": raw}, f,
                  indent=1)
    with open(md_path, "w") as f:
        f.write(markdown(rows, meta))
    # The README's table, beside results.md (summary.md, or
    # results-quick-summary.md next to results-quick.md).
    stem = os.path.splitext(md_path)[0]
    spath = (os.path.join(os.path.dirname(md_path), "summary.md")
             if os.path.basename(stem) == "results" else stem + "-summary.md")
    with open(spath, "w") as f:
        f.write(summary_md(rows, meta))


def markdown(rows, meta):
    """The summary table: one line per workload, a column per peer with
    'figure (ours/peer [min..max])', main comparisons only; then the rows
    of the other producers."""
    cols = [name for prog, name in PEERS
            if any(r["peer"] == name and r["status"] != "n/a" for r in rows)
            or prog != "base"]
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
                cells.append("%s (%s)" % (num(r["peer_result"]["median"]),
                                          ratio_text(r, md=True)))
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
                ratio_text(r, md=True) if r["ratio"] is not None else ""))
    out += sub_run_table(rows)
    out.append("")
    out.append("Medians over %d repetitions (%s mode, %s); in each, every "
               "workload group ran alone in fresh processes, every peer "
               "next to ours.  Each peer cell is "
               "the peer's median and, in brackets, ours / peer: the median "
               "and [min..max] of the pairwise ratios, one per "
               "repetition (below 1: ours faster or smaller).  Bold: every pairwise "
               "ratio is above 1 (we lose).  *no verdict*: the range "
               "contains 1.  The second table's figures come from one run "
               "of each producer; where that run interleaves ours and the "
               "peer (the Python rows), the ratio is the median [min..max] "
               "of its per-round pairwise ratios, with the target's verdict "
               "where there is one; \"(one run)\": a ratio of medians.  "
               "Alternative forms of "
               "a peer and the figures' own minima and maxima are in "
               "results.csv."
               % (meta["reps"], meta["mode"], meta["started"][:10]))
    return "\n".join(out) + "\n"


def sub_run_table(rows):
    """For the groups run several times a repetition: each main row's
    ratio over every sub-run pair on its own (ours' sub-run s against the
    peer's sub-run s of the same repetition), beside the repetitions'
    ratio of the first table.  The repetition's median smooths away a
    single odd sub-run, so this range is wider; where the two verdicts
    differ the line says so."""
    sub = [r for r in rows if r["source"] == "suite" and r["main"]
           and r.get("sub_pairs")]
    if not sub:
        return []
    out = ["", "Every sub-run pair on its own (groups with several sub-runs "
           "a repetition):", "",
           "| workload | peer | per repetition | per sub-run pair | "
           "pairs | verdicts |", "|---|---|---:|---:|---:|---|"]
    for r in sub:
        same = r["verdict"] == r["sub_verdict"]
        out.append("| %s | %s | %s [%s..%s] | %s [%s..%s] | %d | %s |" % (
            r["workload"], r["peer"], fmt_ratio(r["ratio"]),
            fmt_ratio(r["ratio_min"]), fmt_ratio(r["ratio_max"]),
            fmt_ratio(r["sub_ratio"]), fmt_ratio(r["sub_ratio_min"]),
            fmt_ratio(r["sub_ratio_max"]), r["sub_pairs"],
            r["verdict"] if same else "**%s / %s**" % (r["verdict"],
                                                        r["sub_verdict"])))
    return out


# The README's table: a chosen set of rows, main forms only.  (our key,
# label); the label says what the figure is per.
SUMMARY = [
    ("check.plain", "check, plain token"),
    ("check.depth10000", "check, chained depth 10,000"),
    ("fanout.trigger", "fan-out: trigger a root with 1,000,000 children, "
     "per child"),
    ("fanout.trigger_recycled", "same, children scattered in memory "
     "(recycled heap)"),
    ("fanout.trigger_scattered", "same, each child made in just-freed "
     "memory"),
    ("fanout.destroy", "fan-out: destroy a triggered child (creation order)"),
    ("chain.trigger", "chain of depth 100,000: trigger, per link"),
    ("chain.destroy", "chain of depth 100,000: destroy, per link"),
    ("churn", "churn: create and destroy a child of a long-lived parent"),
    ("churn_chain1", "churn, the child made by ct_token_chain_n(n=1)"),
    ("churn_deadline", "churn: the same child with a 1-hour deadline"),
    ("memory.child", "memory per live child, link included (RSS)"),
    ("memory.token", "memory per plain token (RSS)"),
    ("wake.wait.p50", "wake a blocked thread, 2 CPUs, p50"),
    ("wake.wait.p99", "wake a blocked thread, 2 CPUs, p99"),
    ("wake_1cpu.wait.p50", "wake a blocked thread, 1 CPU, p50"),
    ("wake.epoll.p50", "epoll on the token's descriptor, 2 CPUs, p50"),
    ("wake.epoll.p99", "epoll on the token's descriptor, 2 CPUs, p99"),
    ("wake_1cpu.epoll.p50", "epoll on the token's descriptor, 1 CPU, p50"),
    ("poll.ct", "ct_poll on a ready pipe, per call"),
]
UNIT_SHORT = {"ns/check": "ns", "ns/child": "ns", "ns/link": "ns",
              "ns/cycle": "ns", "ns/call": "ns", "B/token": "B"}


def fig_text(x, unit):
    """A figure with its unit; wake-up latencies in microseconds."""
    if unit == "ns" and x >= 1000:
        return "%s µs" % num(x / 1000.0)
    return "%s %s" % (num(x), UNIT_SHORT.get(unit, unit))


def summary_md(rows, meta):
    """The README's table from this run: a line per SUMMARY row, a column
    per peer with 'figure (ours/peer [min..max])'."""
    cols = [name for prog, name in PEERS if prog != "base"]
    out = ["| workload (median) | ours | " + " | ".join(cols) + " |",
           "|---|---:|" + "---:|" * len(cols)]
    for key, label in SUMMARY:
        mine = [r for r in rows if r["source"] == "suite" and
                r["ours_key"] == key and r["main"]]
        if not mine:
            continue
        unit = mine[0]["unit"]
        cells = []
        for c in cols:
            r = next((x for x in mine if x["peer"] == c), None)
            if r is None or r["status"] == "n/a":
                cells.append("N/A" if r is not None else "")
            elif r["status"] not in ("ok", "partial") or not r["peer_result"]:
                cells.append("unavailable")
            else:
                cells.append("%s (%s)" % (
                    fig_text(r["peer_result"]["median"], unit),
                    ratio_text(r, md=True)))
        out.append("| %s | %s | %s |" % (
            label, fig_text(mine[0]["ours"]["median"], unit),
            " | ".join(cells)))
    out.append("")
    out.append("Run of %s (%s mode, %d repetitions).  Cell: the peer's "
               "median (ours / peer: median [min..max] of the pairwise "
               "ratios; below 1: ours faster or smaller; **bold**: above 1 "
               "in every pair; *no verdict*: the range contains 1)."
               % (meta["started"][:16].replace("T", " "), meta["mode"],
                  meta["reps"]))
    return "\n".join(out) + "\n"
