# SPDX-License-Identifier: MIT
"""The benchmark table's definition, shared by run.py and report.py: the
programs (peers) in column order, which key of each peer is compared with
which of our keys, and the footnotes printed under the table.  Data only;
it runs nothing."""

# Display names of the programs, in column order.
PEERS = [("cpp", "C++"), ("glib", "GLib"), ("go", "Go"), ("rust", "tokio"),
         ("node", "Node"), ("base", "baseline")]
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
    "tokio.  tokio-util's CancellationToken (Debian's crates, built "
    "offline): a child is child_token(), destroy is drop (the child unlinks "
    "itself from its parent), a check is is_cancelled() (a mutex in "
    "tokio-util 0.7), a trigger is cancel(), and a wait is "
    "cancelled().await in a current-thread runtime blocked on its own "
    "thread.  It has no deadline and no descriptor: N/A.",
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
         cmp("rust", "check.%s", "is_cancelled() (locks the node's mutex)"),
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
        cmp("rust", "fanout." + _fig, "child = root.child_token(); "
            "destroy = drop"),
        na("node", NA_GC) if _gc else
        cmp("node", "fanout." + _fig, "child = AbortSignal.any([root])",
            "any"),
    ] + ([] if _gc else [
        cmp("node", "fanout_listener." + _fig,
            "child = AbortController + 'abort' listener on root",
            "listener", main=False)])))
WORKLOADS.append(("fanout", "fan-out: trigger root, children in just-freed "
                  "memory (scattered)", "fanout.trigger_scattered", True, [
                      cmp("cpp", "fanout.trigger_scattered",
                          "each child made while the previous generation is "
                          "destroyed in a random order")]))
for _fig, _label in FANOUT:
    WORKLOADS.append(("fanout", "fan-out chain_n(1): " + _label,
                      "fanout_chain1." + _fig, True, [
                          cmp("cpp", "fanout." + _fig,
                              "child = stop_source + stop_callback"),
                          cmp("rust", "fanout." + _fig,
                              "child = root.child_token()")]))
for _fig, _label in (("create", "create link"), ("trigger", "trigger root"),
                     ("destroy", "destroy link")):
    _gc = _fig == "destroy"
    WORKLOADS.append(("chain", "deep chain: " + _label, "chain." + _fig, True, [
        cmp("cpp", "chain." + _fig, "emulated chain; stop recurses per link"),
        cmp("glib", "chain." + _fig,
            "handler-linked chain; cancel nests per link"),
        na("go", NA_GC) if _gc else
        cmp("go", "chain." + _fig, "WithCancel chain"),
        cmp("rust", "chain." + _fig, "child_token() chain; cancel is "
            "iterative"),
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
    cmp("rust", "churn", "parent.child_token(), dropped"),
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
                  True, [cmp("cpp", "churn", "Child on the stack", "stack"),
                         cmp("rust", "churn", "parent.child_token(), "
                             "dropped")]))
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
                      na("rust", "CancellationToken has no deadline (a "
                         "tokio timer needs a task that cancels it)"),
                      na("node", "AbortSignal.timeout() cannot be "
                         "cancelled: its timer lives until it fires"),
                  ]))
WORKLOADS.append(("churn", "churn: deadline RSS delta", "churn_deadline.rss",
                  False, [cmp("go", "churn_deadline.rss", "should stay ~0")]))
for _k, _label, _c, _g, _go, _r, _n in (
        ("token", "memory per live plain token", "std::stop_source (state)",
         "g_cancellable_new()", "WithCancel(Background())",
         "CancellationToken::new()", "new AbortController()"),
        ("child", "memory per live child of one root", "heap Child",
         "GCancellable + handler", "WithCancel(root)", "root.child_token()",
         "AbortSignal.any"),
        ("link", "memory per live chain link", "heap Child",
         "GCancellable + handler", "WithCancel(prev)", "prev.child_token()",
         "AbortSignal.any")):
    WORKLOADS.append(("memory", _label + " (RSS)", "memory." + _k, True, [
        cmp("cpp", "memory." + _k, _c), cmp("glib", "memory." + _k, _g),
        cmp("go", "memory." + _k, _go),
        cmp("rust", "memory." + _k, _r), cmp("node", "memory." + _k, _n)]))
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
            cmp("rust", "%s.wait.%s" % (_pfx, _pct),
                "block_on(token.cancelled()) in a current-thread runtime on "
                "a thread of its own"),
            na("node", NODE_WAKE),
            cmp("base", "%s.condvar.%s" % (_pfx, _pct),
                "pthread mutex+cond+flag, signal under the mutex", "cond"),
            cmp("base", "%s.condvar_unl.%s" % (_pfx, _pct),
                "pthread mutex+cond+flag, signal after unlock",
                "cond, unlocked", main=False),
        ] + ([cmp("rust", "wake_1cpu.task.%s" % _pct,
                  "a task awaiting cancelled(), woken by a task of the same "
                  "current-thread runtime (a task switch, as Go's)", "task",
                  main=False)] if _pfx == "wake_1cpu" else [])))
    for _pct in ("p50", "p99"):
        WORKLOADS.append(("wake", "wake %s: epoll on the token fd %s"
                          % (_regime, _pct),
                          "%s.epoll.%s" % (_pfx, _pct), True, [
            cmp("cpp", "%s.epoll.%s" % (_pfx, _pct),
                "epoll on an eventfd written by a stop_callback"),
            cmp("glib", "%s.epoll.%s" % (_pfx, _pct),
                "epoll on g_cancellable_get_fd()"),
            na("go", "a context has no descriptor"),
            na("rust", "a CancellationToken has no descriptor"),
            na("node", NODE_WAKE),
            cmp("base", "%s.epoll_raw.%s" % (_pfx, _pct),
                "epoll_wait on a plain eventfd written with write(2), same "
                "process: the floor", "raw eventfd"),
        ]))
WORKLOADS.append(("poll", "ct_poll on a ready pipe", "poll.ct", True, [
    cmp("cpp", "poll.cpp", "stop_requested() + poll({pipe, stop eventfd})"),
    cmp("glib", "poll.glib",
        "is_cancelled + g_poll({pipe, cancellable fd}), fd made once"),
    cmp("glib", "poll.glib_percall",
        "make_pollfd + g_poll + release_fd per call (as GSocket)", "per call",
        main=False),
    na("go", "a context cannot be polled with a descriptor"),
    na("rust", "a CancellationToken has no descriptor"),
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

