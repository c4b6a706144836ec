# SPDX-License-Identifier: MIT
"""Benchmark: a token shared across processes -- cancel_token's manager and
client (the C token server) against a multiprocessing manager serving a
threading.Event, the design the reference library uses -- in the same run.

    PYTHONPATH=<build>/python /usr/bin/python3 python/bench/cross_process.py [--quick] [--json FILE]

This process is the owner: it serves the tokens with BaseCancelTokenManager
(start(): a thread of this process) and the events with a
multiprocessing.managers.BaseManager whose server also runs on threads of
this process.  Both listen on Unix sockets in a private temporary
directory.  Client processes (multiprocessing, spawn) connect to both.

Workloads:
  check: proxy.triggered vs Event.is_set()
        ns per check of an untriggered proxy, in the client: ours reads a
        local atomic; multiprocessing's proxy makes a round trip to the
        owner.  Median of repetitions.
  notice latency p50 / p99
        the owner triggers a token (sets an event); a client waiting for it
        notices.  Ours: the client awaits ``proxy.wait()`` in asyncio.
        multiprocessing: the client is blocked in the proxy call
        ``event.wait()``.  Latency = the client's time.monotonic_ns() after
        it returns - the owner's just before trigger()/set() (CLOCK_MONOTONIC,
        one clock for every process).  One pre-registered token (event) per
        sample; the two take turns sample by sample; the owner triggers only
        once the client is asleep.  Percentiles of all samples; min..max are
        the same percentile over each of the repetition blocks.
  owner per trigger, 100 proxies (call / CPU)
        100 proxies of one token, in 100 connections from 4 client
        processes, all waiting; the owner triggers it (sets the event that
        100 proxy calls wait on).  "call" is the wall time of trigger() /
        set() in the owner; "CPU" is the owner process's CPU time (every
        thread: our server thread; multiprocessing's 100 handler threads)
        from just before the call until every waiter has been told.

--timeline (a diagnostic; no table row): the notice path stage by stage --
owner trigger() to the client loop's reader callback, the callback (futures
resolved), resolved to the awaiting task resuming -- ours beside a floor
for any asyncio design (the owner writes a socket the client's loop
watches with add_reader), sample by sample, medians and p10..p90.

Every workload is interleaved, so each result also carries its pairwise
ratios ours / multiprocessing ("pairwise" in the --json document, which
bench/run.py reports as it reports its own pairs): one per repetition
(check), per block of samples (latency percentiles) or per round (owner
rows).

Figures move with machine load; run on a quiet machine.  The whole run
takes under a minute (about ten seconds with --quick).
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.managers import BaseManager

PEER = 'multiprocessing manager'
PEER_KEY = 'multiprocessing'
AUTHKEY = b'cross-process-bench'
FAN_PROCS = 4
FAN_PER_PROC = 25


class _EventClient(BaseManager):
    """The client side of the owner's multiprocessing manager."""


_EventClient.register('get_event')
_EventClient.register('get_lat_event')
_EventClient.register('get_fan_event')


def _percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def _stat(samples):
    return {'median': statistics.median(samples), 'min': min(samples),
            'max': max(samples)}


def _pairwise(ours, peer):
    """ours / peer for each pair of interleaved figures (one per
    repetition, block or round)."""
    return [o / p for o, p in zip(ours, peer) if p > 0]


# ---------------------------------------------------------------------------
# Client processes.

def _check_loop(fn, n):
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t0) / n


def _latency_client(ours_addr, mp_addr, conn, cfg):
    from cancel_token import CancelTokenClient
    client = CancelTokenClient(ours_addr)
    client.connect()
    mgr = _EventClient(address=mp_addr, authkey=AUTHKEY)
    mgr.connect()
    try:
        # 1. Check cost, the two taking turns.
        proxy = client.get_cancel_token()
        event = mgr.get_event()
        ours_check = lambda: proxy.triggered  # noqa: E731
        ours, peer = [], []
        for _ in range(cfg['reps']):
            ours.append(_check_loop(ours_check, cfg['check_ours']))
            peer.append(_check_loop(event.is_set, cfg['check_peer']))
        conn.send(('check', ours, peer))

        # 2. Notice latency.
        n = cfg['samples']
        ours_p = [getattr(client, 'lat%d' % i)() for i in range(n)]
        mp_p = [mgr.get_lat_event(i) for i in range(n)]
        loop = asyncio.new_event_loop()

        async def ours_one(p, i):
            task = loop.create_task(p.wait())
            await asyncio.sleep(0)  # the task is waiting now
            conn.send(('ready', 'ours', i))
            await task
            return time.monotonic_ns()

        def mp_one(p, i):
            conn.send(('ready', 'mp', i))
            p.wait()
            return time.monotonic_ns()

        ours_t, mp_t = [0] * n, [0] * n
        for i in range(n):
            if i % 2:
                mp_t[i] = mp_one(mp_p[i], i)
                ours_t[i] = loop.run_until_complete(ours_one(ours_p[i], i))
            else:
                ours_t[i] = loop.run_until_complete(ours_one(ours_p[i], i))
                mp_t[i] = mp_one(mp_p[i], i)
        loop.close()
        conn.send(('lat', ours_t, mp_t))
    finally:
        client.shutdown()
    conn.close()
    sys.stdout.flush()
    os._exit(0)  # no proxy finalizers talking to a server that has gone


def _fan_client(ours_addr, mp_addr, conn, k, rounds):
    from cancel_token import CancelTokenClient
    clients = []
    for _ in range(k):
        c = CancelTokenClient(ours_addr)
        c.connect()
        clients.append(c)
    ours_p = [[getattr(c, 'fan%d' % r)() for r in range(rounds)]
              for c in clients]
    mgr = _EventClient(address=mp_addr, authkey=AUTHKEY)
    mgr.connect()
    mp_p = [[mgr.get_fan_event(r) for r in range(rounds)] for _ in range(k)]
    go = [threading.Barrier(k + 1) for _ in range(rounds)]
    done = [threading.Barrier(k + 1) for _ in range(rounds)]

    def mp_waiter(j):
        # Each thread has its own connection to the owner (multiprocessing
        # proxies connect once per thread).
        for r in range(rounds):
            go[r].wait(timeout=30)
            mp_p[j][r].wait(30)
            done[r].wait(timeout=30)

    threads = [threading.Thread(target=mp_waiter, args=(j,), daemon=True)
               for j in range(k)]
    for t in threads:
        t.start()
    loop = asyncio.new_event_loop()

    async def ours_round(r):
        tasks = [loop.create_task(p[r].wait()) for p in ours_p]
        await asyncio.sleep(0)
        conn.send('armed')
        await asyncio.wait_for(asyncio.gather(*tasks), 30)

    try:
        conn.send('ready')
        while True:
            if not conn.poll(60):
                break
            msg = conn.recv()
            if msg[0] == 'stop':
                break
            _, kind, r = msg
            if kind == 'ours':
                loop.run_until_complete(ours_round(r))
            else:
                go[r].wait(timeout=30)
                conn.send('armed')
                done[r].wait(timeout=30)
            conn.send('done')
    finally:
        loop.close()
        for c in clients:
            c.shutdown()
    conn.close()
    sys.stdout.flush()
    os._exit(0)


# ---------------------------------------------------------------------------
# The owner.

def _recv(conn, deadline):
    if not conn.poll(max(0.0, deadline - time.monotonic())):
        raise TimeoutError('a client process did not answer in time')
    return conn.recv()


def _waiters(event):
    # threading.Event waits on its Condition; its waiter list tells us that
    # the manager's handler thread is blocked in event.wait().
    return len(event._cond._waiters)


def _until(pred, seconds):
    end = time.monotonic() + seconds
    while not pred():
        if time.monotonic() > end:
            return False
        time.sleep(0.0001)
    return True


def _stop(procs):
    for p in procs:
        p.join(5)
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(2)
        if p.is_alive():
            p.kill()
            p.join()


def run(cfg):
    from cancel_token import (BaseCancelTokenManager, CancelToken,
                              CancelTokenProxy)
    ctx = multiprocessing.get_context('spawn')
    n, rounds = cfg['samples'], cfg['fan_rounds']
    deadline = time.monotonic() + cfg['budget_s']

    check_token = CancelToken('check')
    lat_tokens = [CancelToken('lat%d' % i) for i in range(n)]
    fan_tokens = [CancelToken('fan%d' % r) for r in range(rounds)]
    check_event = threading.Event()
    lat_events = [threading.Event() for _ in range(n)]
    fan_events = [threading.Event() for _ in range(rounds)]

    class TokenManager(BaseCancelTokenManager):
        pass

    TokenManager.register('get_cancel_token', callable=lambda: check_token,
                          proxytype=CancelTokenProxy)
    for t in lat_tokens + fan_tokens:
        TokenManager.register(t.name, callable=lambda t=t: t,
                              proxytype=CancelTokenProxy,
                              create_method=False)

    class EventManager(BaseManager):
        pass

    EventManager.register('get_event', callable=lambda: check_event)
    EventManager.register('get_lat_event', callable=lambda i: lat_events[i])
    EventManager.register('get_fan_event', callable=lambda r: fan_events[r])

    tmp = tempfile.mkdtemp(prefix='ct-xproc-')
    ours_addr = os.path.join(tmp, 'ours.sock')
    mp_addr = os.path.join(tmp, 'mp.sock')
    manager = TokenManager(address=ours_addr)
    procs = []
    mp_server = None
    results = []
    try:
        manager.start()
        mp_server = EventManager(address=mp_addr,
                                 authkey=AUTHKEY).get_server()
        # Its accepter and handler threads, in this process (not
        # serve_forever(), which would poll its stop event every second).
        mp_server.stop_event = threading.Event()
        threading.Thread(target=mp_server.accepter, daemon=True).start()

        # 1 and 2: one client process.
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_latency_client,
                        args=(ours_addr, mp_addr, child, cfg))
        p.start()
        procs.append(p)
        child.close()
        _, ours_c, mp_c = _recv(parent, deadline)
        results.append({
            'case': 'check: proxy.triggered vs Event.is_set()', 'unit': 'ns',
            'ours': _stat(ours_c), PEER_KEY: _stat(mp_c),
            'pairwise': _pairwise(ours_c, mp_c),
            'note': 'untriggered proxy, in the client; median of %d reps'
                    % cfg['reps']})

        trig = {'ours': [0] * n, 'mp': [0] * n}
        for _ in range(2 * n):
            _, kind, i = _recv(parent, deadline)
            if kind == 'mp' and not _until(
                    lambda: _waiters(lat_events[i]) > 0, 5):
                raise TimeoutError('the proxy call did not arrive')
            time.sleep(cfg['settle_s'])  # the client is asleep
            if kind == 'ours':
                trig['ours'][i] = time.monotonic_ns()
                lat_tokens[i].trigger()
            else:
                trig['mp'][i] = time.monotonic_ns()
                lat_events[i].set()
        _, ours_t, mp_t = _recv(parent, deadline)
        parent.close()
        lat = {'ours': [(a - b) / 1000.0 for a, b in zip(ours_t, trig['ours'])],
               'mp': [(a - b) / 1000.0 for a, b in zip(mp_t, trig['mp'])]}
        blocks = cfg['reps']
        for q in (50, 99):
            fig, per = {}, {}
            for kind, xs in lat.items():
                per[kind] = [_percentile(xs[b::blocks], q)
                             for b in range(blocks)]
                fig[kind] = {'median': _percentile(xs, q),
                             'min': min(per[kind]), 'max': max(per[kind])}
            results.append({
                'case': 'notice latency p%d' % q, 'unit': 'us',
                'ours': fig['ours'], PEER_KEY: fig['mp'],
                'pairwise': _pairwise(per['ours'], per['mp']),
                'note': '%d samples; range: p%d of each of %d blocks; ours: '
                        'await proxy.wait(); peer: proxy event.wait()'
                        % (n, q, blocks)})

        # 3: 100 proxies in 4 client processes.
        conns = []
        for _ in range(FAN_PROCS):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_fan_client,
                            args=(ours_addr, mp_addr, child, FAN_PER_PROC,
                                  rounds))
            p.start()
            procs.append(p)
            child.close()
            conns.append(parent)
        for c in conns:
            _recv(c, deadline)  # 'ready': connected, proxies made
        total = FAN_PROCS * FAN_PER_PROC
        call = {'ours': [], 'mp': []}
        cpu = {'ours': [], 'mp': []}
        late = 0
        for r in range(rounds):
            for kind in (('ours', 'mp') if r % 2 == 0 else ('mp', 'ours')):
                for c in conns:
                    c.send(('arm', kind, r))
                for c in conns:
                    _recv(c, deadline)  # 'armed'
                if kind == 'mp' and not _until(
                        lambda: _waiters(fan_events[r]) >= total, 10):
                    raise TimeoutError('the proxy calls did not arrive')
                time.sleep(5 * cfg['settle_s'])
                c0 = time.process_time_ns()
                w0 = time.perf_counter_ns()
                if kind == 'ours':
                    fan_tokens[r].trigger()
                else:
                    fan_events[r].set()
                w1 = time.perf_counter_ns()
                time.sleep(cfg['fan_window_s'])
                c1 = time.process_time_ns()
                # Every client told before c1?  (its 'done' is waiting)
                if not all(c.poll(0) for c in conns):
                    late += 1
                for c in conns:
                    _recv(c, deadline)  # 'done'
                call[kind].append((w1 - w0) / 1000.0)
                cpu[kind].append((c1 - c0) / 1000.0)
        for c in conns:
            c.send(('stop',))
            c.close()
        note = ('%d proxies in %d processes, all waiting; median of %d '
                'rounds' % (total, FAN_PROCS, rounds))
        if late:
            note += '; %d rounds not done within the %g ms window' % (
                late, cfg['fan_window_s'] * 1000)
        results.append({
            'case': 'owner trigger() call, 100 proxies', 'unit': 'us',
            'ours': _stat(call['ours']), PEER_KEY: _stat(call['mp']),
            'pairwise': _pairwise(call['ours'], call['mp']),
            'note': note + '; wall time of trigger() / Event.set()'})
        results.append({
            'case': 'owner CPU per trigger, 100 proxies', 'unit': 'us',
            'ours': _stat(cpu['ours']), PEER_KEY: _stat(cpu['mp']),
            'pairwise': _pairwise(cpu['ours'], cpu['mp']),
            'note': note + '; owner process CPU time, every thread'})
    finally:
        _stop(procs)
        manager.shutdown()
        if mp_server is not None:
            mp_server.stop_event.set()
            try:
                mp_server.listener.close()
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    return results


# ---------------------------------------------------------------------------
# --timeline: where the notice latency goes (a diagnostic; no row of the
# table comes from it).

def _timeline_client(ours_addr, floor_addr, conn, n):
    import socket
    from cancel_token import CancelTokenClient
    from cancel_token import token as tk
    client = CancelTokenClient(ours_addr)
    client.connect()
    proxies = [getattr(client, 'tl%d' % i)() for i in range(n)]
    loop = asyncio.new_event_loop()
    marks = {}
    # Time stamps around the real code (wrapped, not replaced): the
    # Notifier's reader callback, and _LoopWaiters.fire() once it has
    # resolved the futures.
    drain, fire = tk._LoopNotifier._drain, tk._LoopWaiters.fire

    def drain_marked(self):
        marks['reader'] = time.monotonic_ns()
        drain(self)

    def fire_marked(self):
        fire(self)
        marks['fired'] = time.monotonic_ns()

    tk._LoopNotifier._drain = drain_marked
    tk._LoopWaiters.fire = fire_marked
    # The floor: the owner writes one byte to a socket this loop watches
    # with add_reader; the reader resolves a future a task awaits.
    fs = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fs.connect(floor_addr)
    fs.setblocking(False)
    state = {}

    def floor_reader():
        marks['reader'] = time.monotonic_ns()
        fs.recv(16)
        state['fut'].set_result(None)
        marks['fired'] = time.monotonic_ns()

    loop.add_reader(fs.fileno(), floor_reader)

    async def floor_wait():
        state['fut'] = loop.create_future()
        await state['fut']

    async def one(kind, i):
        # The shape of the latency row: a task awaiting, awaited.
        aw = proxies[i].wait() if kind == 'ours' else floor_wait()
        task = loop.create_task(aw)
        await asyncio.sleep(0)
        conn.send(('ready', kind, i))
        await task
        return (marks['reader'], marks['fired'], time.monotonic_ns())

    out = {'ours': [None] * n, 'floor': [None] * n}
    try:
        for i in range(n):
            for kind in (('ours', 'floor') if i % 2 == 0
                         else ('floor', 'ours')):
                out[kind][i] = loop.run_until_complete(one(kind, i))
        conn.send(('tl', out))
    finally:
        loop.remove_reader(fs.fileno())
        loop.close()
        fs.close()
        client.shutdown()
    conn.close()
    sys.stdout.flush()
    os._exit(0)


def timeline(cfg):
    """Owner side of --timeline: per stage medians, ours and the floor."""
    import socket
    from cancel_token import (BaseCancelTokenManager, CancelToken,
                              CancelTokenProxy)
    n = cfg['samples']
    tokens = [CancelToken('tl%d' % i) for i in range(n)]

    class TokenManager(BaseCancelTokenManager):
        pass

    for t in tokens:
        TokenManager.register(t.name, callable=lambda t=t: t,
                              proxytype=CancelTokenProxy,
                              create_method=False)
    tmp = tempfile.mkdtemp(prefix='ct-xproc-tl-')
    ours_addr = os.path.join(tmp, 'ours.sock')
    floor_addr = os.path.join(tmp, 'floor.sock')
    manager = TokenManager(address=ours_addr)
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(floor_addr)
    lsock.listen(1)
    ctx = multiprocessing.get_context('spawn')
    deadline = time.monotonic() + cfg['budget_s']
    procs = []
    try:
        manager.start()
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_timeline_client,
                        args=(ours_addr, floor_addr, child, n))
        p.start()
        procs.append(p)
        child.close()
        fsock, _ = lsock.accept()
        trig = {'ours': [0] * n, 'floor': [0] * n}
        for _ in range(2 * n):
            _, kind, i = _recv(parent, deadline)
            time.sleep(cfg['settle_s'])  # the client is asleep
            trig[kind][i] = time.monotonic_ns()
            if kind == 'ours':
                tokens[i].trigger()
            else:
                fsock.send(b'x')
        _, out = _recv(parent, deadline)
        fsock.close()
        parent.close()
    finally:
        _stop(procs)
        manager.shutdown()
        lsock.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print('# notice timeline, %d samples each, interleaved; median (p10 .. '
          'p90) in us; load average %.2f' % (n, os.getloadavg()[0]))
    print('# ours: owner trigger() -> ct_net_server thread -> socket -> '
          'client I/O thread -> Notifier eventfd -> loop')
    print('# floor: owner writes a socket the client loop watches '
          '(add_reader), the reader resolves a future')
    for kind in ('ours', 'floor'):
        rows = [(r - t, f - r, e - f, e - t)
                for t, (r, f, e) in zip(trig[kind], out[kind])]
        for k, name in enumerate(('trigger -> reader callback',
                                  'reader callback (futures resolved)',
                                  'resolved -> awaiting task resumes',
                                  'total')):
            xs = sorted(x[k] / 1000.0 for x in rows)
            print('%-6s %-36s %8.1f  (%6.1f .. %6.1f)'
                  % (kind, name, statistics.median(xs), xs[len(xs) // 10],
                     xs[(9 * len(xs)) // 10]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true',
                    help='fewer samples and rounds (about ten seconds)')
    ap.add_argument('--json', help='also write the results here')
    ap.add_argument('--timeline', action='store_true',
                    help='diagnostic: where the notice latency goes, stage '
                         'by stage, ours and a one-socket asyncio floor '
                         '(prints no table row)')
    args = ap.parse_args(argv)
    if args.timeline:
        timeline({'samples': 300 if args.quick else 2000, 'budget_s': 150,
                  'settle_s': 0.0005})
        return
    if args.quick:
        cfg = {'reps': 3, 'check_ours': 200_000, 'check_peer': 500,
               'samples': 300, 'fan_rounds': 4, 'budget_s': 40}
    else:
        cfg = {'reps': 7, 'check_ours': 2_000_000, 'check_peer': 3000,
               'samples': 3000, 'fan_rounds': 20, 'budget_s': 150}
    cfg.update(settle_s=0.0005, fan_window_s=0.05)

    t0 = time.monotonic()
    results = run(cfg)
    elapsed = time.monotonic() - t0
    print('# python %s (%s), load average %.2f, %s mode, %.1f s'
          % (platform.python_version(), sys.executable, os.getloadavg()[0],
             'quick' if args.quick else 'full', elapsed))
    print('# median [min .. max]; ratio = ours / %s (< 1: ours is '
          'faster): median [min .. max] of the pairwise ratios' % PEER)
    for r in results:
        o, m = r['ours'], r[PEER_KEY]
        pw = r['pairwise']
        r['ratio'] = statistics.median(pw) if pw else None
        print('%-44s ours            %12.3f %s  [%.3f .. %.3f]'
              % (r['case'], o['median'], r['unit'], o['min'], o['max']))
        print('%-44s multiprocessing %12.3f %s  [%.3f .. %.3f]'
              % ('', m['median'], r['unit'], m['min'], m['max']))
        if pw:
            print('%-44s ratio           %12.3g  [%.3g .. %.3g] pairwise%s'
                  % ('', r['ratio'], min(pw), max(pw),
                     ' (range crosses 1: no verdict)'
                     if min(pw) <= 1 <= max(pw) else ''))
        else:
            print('%-44s ratio           n/a' % '')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'peer': PEER, 'python': platform.python_version(),
                       'quick': args.quick, 'elapsed_s': round(elapsed, 2),
                       'results': results}, f, indent=2)


if __name__ == '__main__':
    main()
