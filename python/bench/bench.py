# SPDX-License-Identifier: MIT
"""Benchmark: cancel_token (C core) against a pure-Python token that follows
the reference library's algorithm, in the same run and the same process.

    PYTHONPATH=<build>/python /usr/bin/python3 python/bench/bench.py [--quick]
        [--rounds N] [--only WORD] [--json FILE] [--diagnose]

The pure-Python peer (RefToken below, written for this benchmark) does what
the reference ``asyncio-cancel-token`` does: ``triggered`` and
``triggered_token`` walk the chain recursively on every call; ``trigger``
only sets the token's own asyncio.Event; ``wait`` starts one task for the
token's own event and one task per parent (each of which recurses), waits
for the first, and cancels the rest.

Workloads:
  check/plain, check/depth10, check/depth100
        ``token.triggered`` on an untriggered token at the end of a chain of
        that depth (built as the reference builds chains: a.chain(b).chain(c)...).
  fanout/trigger+observe 100k
        trigger a root to which 100,000 tokens are chained, then read
        ``triggered`` on all 100,000 (the work a program does to notice).
  fanout/trigger only 100k
        only the root's trigger (the reference's is lazy: O(1); ours pushes
        the state down to all 100,000 in C), reported for honesty.
  fanout/trigger+wake 10k waiting
        10,000 tokens chained to a root, one task awaiting each one's
        wait(); time from the root's trigger until all have resumed.
  deep/trigger+observe depth 100k
        a 100,000-deep chain: trigger its root, check its leaf.  The
        reference's recursion cannot do this (tried at depth 10,000).
  wake/plain, wake/depth10
        one task awaiting ``wait()``; time from ``trigger()`` (in the same
        loop) until the task has resumed.
  wake/1000 waiters depth10
        1000 tasks awaiting a depth-10 chain; time from the root's trigger
        until all have resumed.

The two run interleaved: each round runs ours once and the reference
once, ours first in even rounds and the reference first in odd ones
(A B B A ...), so that a drift of the machine hits both alike (--rounds
N, default 7, 3 with --quick; --only WORD picks cases).  Each figure is
the median over the rounds (min and max shown), and each ratio the median
of the per-round ratios reference / ours, with their min..max, so > 1
means we are faster and a range crossing 1 is no verdict.  A case with a
target (TARGETS below: issue 15's "at least 20x faster") also says
whether every round met it ("met"), none did ("missed"), or the range
crosses it ("no verdict").  --json writes every round's figures and the
per-round ratios ours / reference ("pairwise", the convention of
bench/run.py, which reports them as it reports its own pairs).  Timings
move with machine load; run on a quiet machine.

--diagnose runs no case: it splits 'fanout/trigger+observe 100k' into its
parts, ours only, each timed on its own (medians over the rounds): the
trigger; the observe loop alone, over our tokens; the same loop with
``if c:`` in place of ``if c.triggered:`` (what touching each of our
objects costs, with no attribute read); and the loop over 100,000 objects
of an ordinary class with ``__slots__ = ('triggered',)`` (the
interpreter's own floor for such a loop: CPython 3.11 specializes that
attribute read, LOAD_ATTR_SLOT, and it cannot specialize ours).
"""

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time

from cancel_token import CancelToken


# ---------------------------------------------------------------------------
# The reference's algorithm, in pure Python (our own code, for comparison).

class RefToken:
    def __init__(self, name):
        self.name = name
        self._chain = []
        self._event = asyncio.Event()

    def chain(self, other):
        new = RefToken(self.name + ':' + other.name)
        new._chain.extend([self, other])
        return new

    def trigger(self):
        self._event.set()

    @property
    def triggered(self):
        if self._event.is_set():
            return True
        return any(t.triggered for t in self._chain)

    @property
    def triggered_token(self):
        if self._event.is_set():
            return self
        for t in self._chain:
            if t.triggered:
                return t.triggered_token
        return None

    async def wait(self):
        if self.triggered_token is not None:
            return
        futures = [asyncio.ensure_future(self._event.wait())]
        futures += [asyncio.ensure_future(t.wait()) for t in self._chain]
        try:
            done, pending = await asyncio.wait(
                futures, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            for f in futures:
                f.cancel()
            raise
        for f in pending:
            f.cancel()
        for f in pending:
            try:
                await f
            except asyncio.CancelledError:
                pass


IMPLS = {'ours': CancelToken, 'reference': RefToken}

# Targets: case -> the smallest reference / ours every round must reach.
TARGETS = {'fanout/trigger+observe 100k': 20.0}


def target_verdict(ratio, target):
    """'met' if every per-round reference / ours is >= target, 'missed' if
    every one is below it, else 'no verdict'.  ratio: (median, min, max)."""
    if ratio[1] >= target:
        return 'met'
    if ratio[2] < target:
        return 'missed'
    return 'no verdict'


# ---------------------------------------------------------------------------
# Measurement helpers

def median_of(samples):
    return statistics.median(samples), min(samples), max(samples)


def chain_of(cls, depth):
    root = cls('root')
    token = root
    for i in range(depth):
        token = token.chain(cls(f't{i}'))
    return root, token


def bench_check(cls, depth, reps, target_s):
    """ns per `token.triggered` (untriggered, end of a depth-`depth` chain)."""
    _, token = chain_of(cls, depth)
    # Calibrate a loop count that takes about target_s.
    n = 1
    while True:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            token.triggered
        dt = time.perf_counter_ns() - t0
        if dt > target_s * 1e9 / 4 or n > 1 << 26:
            break
        n *= 2
    n = max(1, int(n * (target_s * 1e9) / max(dt, 1)))
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            token.triggered
        samples.append((time.perf_counter_ns() - t0) / n)
    return median_of(samples)


def bench_fanout(cls, n, reps, observe):
    """ms to trigger a root with n chained tokens (and observe them all)."""
    samples = []
    for _ in range(reps):
        root = cls('root')
        children = [cls(f'c{i}').chain(root) for i in range(n)]
        gc.collect()
        t0 = time.perf_counter_ns()
        root.trigger()
        if observe:
            seen = 0
            for c in children:
                if c.triggered:
                    seen += 1
            assert seen == n
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        del children, root
    return median_of(samples)


def bench_fanout_wake(cls, n, reps):
    """ms from the root's trigger until one waiter on each of n chained
    tokens has resumed."""
    async def one():
        root = cls('root')
        children = [cls(f'c{i}').chain(root) for i in range(n)]
        tasks = [asyncio.ensure_future(c.wait()) for c in children]
        for _ in range(4):  # let every wait() park (the reference's nest)
            await asyncio.sleep(0)
        t0 = time.perf_counter_ns()
        root.trigger()
        await asyncio.gather(*tasks)
        return (time.perf_counter_ns() - t0) / 1e6

    loop = asyncio.new_event_loop()
    try:
        return median_of([loop.run_until_complete(one())
                          for _ in range(reps)])
    finally:
        loop.close()


def bench_deep(cls, depth, reps):
    """ms to trigger the root of a depth-`depth` chain and check its leaf."""
    if cls is RefToken:
        # Its eager names make building 100k levels quadratic (minutes);
        # its recursion fails long before 10k anyway.
        depth = min(depth, 10_000)
    samples = []
    for _ in range(reps):
        root, leaf = chain_of(cls, depth)
        t0 = time.perf_counter_ns()
        try:
            root.trigger()
            assert leaf.triggered
        except RecursionError:
            return None
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        del root, leaf
    return median_of(samples)


def bench_wake(cls, depth, rounds, reps, waiters=1):
    """µs from trigger() to all `waiters` tasks resumed, in one loop."""
    async def one_round():
        root, token = chain_of(cls, depth)
        tasks = [asyncio.ensure_future(token.wait()) for _ in range(waiters)]
        # Let every waiter park (the reference's waits spawn tasks that
        # need a few loop iterations to start).
        for _ in range(depth + 3):
            await asyncio.sleep(0)
        t0 = time.perf_counter_ns()
        root.trigger()
        await asyncio.gather(*tasks)
        return (time.perf_counter_ns() - t0) / 1e3

    async def main():
        per_rep = []
        for _ in range(reps):
            lat = [await one_round() for _ in range(rounds)]
            per_rep.append(statistics.median(lat))
        return per_rep

    loop = asyncio.new_event_loop()
    try:
        return median_of(loop.run_until_complete(main()))
    finally:
        loop.close()


class _SlotObject:
    """An ordinary object with a `triggered` slot (--diagnose)."""
    __slots__ = ('triggered',)

    def __init__(self):
        self.triggered = True


def diagnose_fanout(n, reps):
    """--diagnose: the parts of 'fanout/trigger+observe', in ms, each a
    median [min, max] over reps rounds."""
    def observe(children):
        t0 = time.perf_counter_ns()
        seen = 0
        for c in children:
            if c.triggered:
                seen += 1
        assert seen == n
        return (time.perf_counter_ns() - t0) / 1e6

    def touch(children):
        t0 = time.perf_counter_ns()
        seen = 0
        for c in children:
            if c:
                seen += 1
        assert seen == n
        return (time.perf_counter_ns() - t0) / 1e6

    parts = {'trigger': [], 'observe loop': [], 'touch loop (if c:)': [],
             'observe loop, ordinary objects': []}
    for _ in range(reps):
        for what in ('observe loop', 'touch loop (if c:)'):
            root = CancelToken('root')
            children = [CancelToken(f'c{i}').chain(root) for i in range(n)]
            gc.collect()
            t0 = time.perf_counter_ns()
            root.trigger()
            parts['trigger'].append((time.perf_counter_ns() - t0) / 1e6)
            parts[what].append((observe if what == 'observe loop'
                                else touch)(children))
            del children, root
        plain = [_SlotObject() for _ in range(n)]
        gc.collect()
        parts['observe loop, ordinary objects'].append(observe(plain))
        del plain
    return {k: median_of(v) for k, v in parts.items()}


# ---------------------------------------------------------------------------

def fmt(stat, unit):
    if stat is None:
        return 'fails (RecursionError)'
    med, lo, hi = stat
    return f'{med:12.3f} {unit}  [{lo:.3f} .. {hi:.3f}]'


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true',
                    help='fewer repetitions and rounds (seconds, not minutes)')
    ap.add_argument('--json', help='also write the results here')
    ap.add_argument('--only', metavar='WORD',
                    help='run only the cases whose name contains WORD')
    ap.add_argument('--rounds', type=int,
                    help='interleaved rounds (default 7, 3 with --quick)')
    ap.add_argument('--diagnose', action='store_true',
                    help="split 'fanout/trigger+observe 100k' into its "
                         'parts (ours only) and run no case')
    args = ap.parse_args(argv)
    reps = args.rounds or (3 if args.quick else 7)  # interleaved rounds
    if args.diagnose:
        print(f'# python {platform.python_version()} ({sys.executable}), '
              f'load average {os.getloadavg()[0]:.2f}; '
              "'fanout/trigger+observe 100k' in parts, ours only, "
              f'median [min .. max] over {reps} rounds')
        parts = diagnose_fanout(100_000, reps)
        for part, stat in parts.items():
            print(f'{part:34s} {fmt(stat, "ms")}')
        if args.json:
            with open(args.json, 'w') as f:
                json.dump({'python': platform.python_version(),
                           'diagnose': {k: dict(zip(('median', 'min', 'max'),
                                                    v))
                                        for k, v in parts.items()}},
                          f, indent=2)
        return
    check_s = 0.02 if args.quick else 0.2
    wake_rounds = 50 if args.quick else 500

    cases = [
        ('check/plain', 'ns', lambda c: bench_check(c, 0, 1, check_s)),
        ('check/depth10', 'ns', lambda c: bench_check(c, 10, 1, check_s)),
        ('check/depth100', 'ns', lambda c: bench_check(c, 100, 1, check_s)),
        ('fanout/trigger+observe 100k', 'ms',
         lambda c: bench_fanout(c, 100_000, 1, True)),
        ('fanout/trigger only 100k', 'ms',
         lambda c: bench_fanout(c, 100_000, 1, False)),
        ('fanout/trigger+wake 10k waiting', 'ms',
         lambda c: bench_fanout_wake(c, 10_000, 1)),
        ('deep/trigger+observe depth 100k', 'ms',
         lambda c: bench_deep(c, 100_000, 1)),
        ('wake/plain', 'us',
         lambda c: bench_wake(c, 0, wake_rounds, 1)),
        ('wake/depth10', 'us',
         lambda c: bench_wake(c, 10, wake_rounds, 1)),
        ('wake/1000 waiters depth10', 'us',
         lambda c: bench_wake(c, 10, max(5, wake_rounds // 50), 1,
                              waiters=1000)),
    ]
    print(f'# python {platform.python_version()} ({sys.executable}), '
          f'load average {os.getloadavg()[0]:.2f}, '
          f'{"quick" if args.quick else "full"} mode')
    print(f'# {reps} rounds, each running ours and the reference once '
          '(ours first in even rounds, the reference first in odd ones, so '
          'drift of the machine hits both); figures are '
          'median [min .. max] over the rounds; ratio = reference / ours '
          'per round (> 1: ours is faster), median [min .. max]')
    results = []
    for name, unit, fn in cases:
        if args.only and args.only not in name:
            continue
        per = {impl: [] for impl in IMPLS}
        ratios, pairwise = [], []
        for rnd in range(reps):
            order = list(IMPLS) if rnd % 2 == 0 else list(IMPLS)[::-1]
            got = {impl: fn(IMPLS[impl]) for impl in order}
            for impl in IMPLS:
                per[impl].append(got[impl] and got[impl][0])
            if got['ours'] and got['reference']:
                ratios.append(got['reference'][0] / got['ours'][0])
                pairwise.append(got['ours'][0] / got['reference'][0])
        ours = median_of(per['ours'])
        ref = median_of(per['reference']) if None not in per['reference'] \
            else None
        ratio = median_of(ratios) if ratios else None
        print(f'{name:34s} ours      {fmt(ours, unit)}')
        print(f'{"":34s} reference {fmt(ref, unit)}')
        target = TARGETS.get(name)
        if ratio:
            verdict = ' (range crosses 1: no verdict)' \
                if ratio[1] <= 1 <= ratio[2] else ''
            if target:
                verdict += (f'; target >= {target:g}x: '
                            f'{target_verdict(ratio, target)}')
            print(f'{"":34s} ratio     {ratio[0]:12.3g}x  '
                  f'[{ratio[1]:.3g} .. {ratio[2]:.3g}]{verdict}')
        else:
            print(f'{"":34s} ratio     n/a (reference fails)')
        entry = {
            'case': name, 'unit': unit,
            'ours': dict(zip(('median', 'min', 'max'), ours)),
            'reference': ref and dict(zip(('median', 'min', 'max'), ref)),
            'ratio': ratio and dict(zip(('median', 'min', 'max'), ratio)),
            # Every round's figures (None: the reference failed), and the
            # per-round ratios in bench/run.py's convention, ours / peer.
            'rounds': {impl: per[impl] for impl in IMPLS},
            'pairwise': pairwise}
        if target:
            # run.py's convention: ours / peer must stay at or below this.
            entry['target'] = {
                'max_ratio': 1.0 / target,
                'text': f'reference / ours >= {target:g} in every round',
                'verdict': target_verdict(ratio, target) if ratio else None}
        results.append(entry)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'python': platform.python_version(),
                       'quick': args.quick, 'results': results}, f, indent=2)


if __name__ == '__main__':
    main()
