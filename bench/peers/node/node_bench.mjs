// SPDX-License-Identifier: MIT
//
// node_bench.mjs -- the Node.js side of the libcanceltoken benchmark suite:
// the workloads of ../../ct_bench.c written the way a Node program writes
// them with AbortController / AbortSignal, printed in the
// key,unit,median,min,max,note format of ../../bench_util.h so that
// ../../run.py can join them.  Run it as
//     node --expose-gc node_bench.mjs [--quick] [--reps N] [--only GROUPS]
//
// Design notes: a child token is AbortSignal.any([parent]) (Node >= 20.3),
// the platform's own chaining.  AbortSignal.any flattens: the child of a
// child depends directly on the root, so a "chain" of any() is, inside,
// one root with many dependants.  The emulated form, a child
// AbortController aborted by an 'abort' listener on the parent, is also
// measured where it fits (fan-out, churn).  A check is signal.aborted.
// Memory is the RSS from /proc/self/statm, as on every other side.  Node
// has no destroy step: a dropped signal is reclaimed by the collector.
// There are no threads sharing a signal, so the wake-up and poll workloads
// are N/A; AbortSignal.timeout cannot be cancelled, so the churn of timed
// tokens is N/A too.

import { readFileSync } from 'node:fs';
import { setMaxListeners } from 'node:events';

const argv = process.argv.slice(2);
const cfg = { quick: false, reps: 0, only: null };
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--quick') cfg.quick = true;
  else if (argv[i] === '--reps' && i + 1 < argv.length) cfg.reps = Number(argv[++i]);
  else if (argv[i] === '--only' && i + 1 < argv.length) cfg.only = new Set(argv[++i].split(','));
  else {
    process.stderr.write('usage: node_bench.mjs [--quick] [--reps N] [--only GROUP,...]\n');
    process.exit(2);
  }
}
// Sizes as in bench_util.h, with the check loops at a tenth (the figure
// is as precise) and fan-out, chain, churn and memory at a tenth: a
// million AbortSignal.any() children take seconds each way.
const Q = cfg.quick;
const reps = cfg.reps > 0 ? cfg.reps : (Q ? 3 : 5);
const checkIters = Q ? 500000 : 10000000;
const fanoutN = Q ? 20000 : 100000;
const chainN = Q ? 2000 : 10000;
const churnN = Q ? 20000 : 100000;
const memN = Q ? 20000 : 100000;
const selected = (g) => cfg.only === null || cfg.only.has(g);
const gc = globalThis.gc ?? (() => {});

const progress = (w) => process.stderr.write(`node_bench: ${w}\n`);
const now = () => process.hrtime.bigint(); // CLOCK_MONOTONIC, in ns
const nsPer = (t0, t1, n) => Number(t1 - t0) / n;

function emit(key, unit, v, note) {
  if (v.length === 0) return;
  v.sort((a, b) => a - b);
  const n = v.length;
  const med = n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  const f = (x) => x.toFixed(4);
  console.log(`${key},${unit},${f(med)},${f(v[0])},${f(v[n - 1])},${note.replaceAll(',', ';')}`);
}

const pageSize = 4096;
function rssBytes() {
  const f = readFileSync('/proc/self/statm', 'utf8').split(' ');
  return Number(f[1]) * pageSize;
}

// The permutation of bench_util.h's bu_shuffle (same generator and seed).
function shuffle(n) {
  const idx = new Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  let x = 0x9e3779b97f4a7c15n;
  const M = (1n << 64n) - 1n;
  for (let i = n; i > 1; i--) {
    x ^= x >> 12n;
    x ^= (x << 25n) & M;
    x ^= x >> 27n;
    const j = Number(((x * 0x2545f4914f6cdd1dn) & M) % BigInt(i));
    const t = idx[i - 1]; idx[i - 1] = idx[j]; idx[j] = t;
  }
  return idx;
}

// A child of parent's signal, in the two forms.
const anyChild = (parentSignal) => AbortSignal.any([parentSignal]);
// Node's EventTarget checks every addEventListener against the listeners
// already there (no duplicates allowed), so adding the n-th listener costs
// O(n): a fan-out of listener children is quadratic to build, and is run
// at a tenth of the size of the any() one.
function listenerChild(parentSignal) {
  const c = new AbortController();
  const f = () => c.abort(parentSignal.reason);
  parentSignal.addEventListener('abort', f, { once: true });
  return { c, f, signal: c.signal };
}

// ---- 1. check cost ----------------------------------------------------

// The loop the optimizing compiler sees.  Each token measured gets its own
// copy, compiled from source (new Function), so that each copy's type
// feedback sees one kind of signal: a shared loop would turn polymorphic
// after the first kind and measure that instead.  The compiler does not
// hoist the getter out of the loop: the figure stays well above that of an
// empty loop.
const checkSrc = 'let hits = 0; for (let i = 0; i < n; i++) { if (sig.aborted) hits++; } return hits;';

function timeCheck(loop, sig, n) {
  const t0 = now();
  if (loop(sig, n) !== 0) throw new Error('check loop saw an aborted signal');
  return nsPer(t0, now(), n);
}

// A fresh loop, run three full times untimed so that the measured runs
// execute optimized code (the C sides need a tenth of a loop; a JIT needs
// more).
function warmCheck(sig) {
  const loop = new Function('sig', 'n', checkSrc);
  for (let k = 0; k < 3; k++) timeCheck(loop, sig, checkIters);
  return loop;
}

function makeAnyChain(depth) {
  const root = new AbortController();
  const l = new Array(depth);
  let prev = root.signal;
  for (let i = 0; i < depth; i++) {
    l[i] = anyChild(prev);
    prev = l[i];
  }
  return { root, l };
}

function benchCheck() {
  progress('check');
  // signal.aborted costs ~1-4 ns until the program has made an
  // AbortSignal.any() signal and ~8-20 ns after (the getter's inline cache
  // turns polymorphic).  run.py runs each workload group in a process of
  // its own, and the plain check is timed first, before any any() signal
  // exists: Node's best case (the chained checks below make any() chains
  // first, so they measure the other state, as a program using any()
  // would see it).
  const ac = new AbortController();
  const v = [];
  const loop = warmCheck(ac.signal);
  for (let r = 0; r < reps; r++) v.push(timeCheck(loop, ac.signal, checkIters));
  emit('check.plain', 'ns/check', v, 'signal.aborted; no AbortSignal.any() made yet in the process');
  for (const depth of [10, 100, 10000]) {
    const { l } = makeAnyChain(depth);
    const leaf = l[depth - 1];
    const w = [];
    const loop2 = warmCheck(leaf);
    for (let r = 0; r < reps; r++) w.push(timeCheck(loop2, leaf, checkIters));
    emit(`check.depth${depth}`, 'ns/check', w, 'signal.aborted on the leaf of an AbortSignal.any chain');
  }
}

// ---- 2. fan-out and deep chain --------------------------------------

function benchFanout(form) {
  progress(`fanout (${form})`);
  const n = form === 'any' ? fanoutN : fanoutN / 10;
  const names = ['create', 'trigger', 'create_recycled', 'trigger_recycled'];
  const v = names.map(() => []);
  const kids = new Array(n).fill(null);
  const perm = shuffle(n);
  const make = form === 'any' ? anyChild : listenerChild;
  const sigOf = form === 'any' ? (k) => k : (k) => k.signal;
  for (let r = 0; r < reps; r++) {
    for (let g = 0; g < 2; g++) {
      if (g === 0) gc();
      const root = new AbortController();
      setMaxListeners(0, root.signal); // silence the "possible leak" warning
      const t0 = now();
      for (let i = 0; i < n; i++) kids[i] = make(root.signal);
      const t1 = now();
      root.abort();
      const t2 = now();
      for (let i = 0; i < n; i++)
        if (!sigOf(kids[i]).aborted) throw new Error('fanout: a child was not aborted');
      v[2 * g].push(nsPer(t0, t1, n));
      v[2 * g + 1].push(nsPer(t1, t2, n));
      // Drop the children (random order first, as on the C sides).
      for (let i = 0; i < n; i++) kids[g === 0 ? perm[i] : i] = null;
    }
  }
  const what = form === 'any' ? 'child = AbortSignal.any([root.signal])'
    : "child = AbortController aborted by an 'abort' listener on root";
  const pfx = form === 'any' ? 'fanout' : 'fanout_listener';
  names.forEach((name, k) => emit(`${pfx}.${name}`, 'ns/child', v[k], `n=${n} ${what}`));
}

function benchChain() {
  progress('deep chain');
  const n = chainN;
  const vc = [], vt = [];
  for (let r = 0; r <= reps; r++) {
    const t0 = now();
    const { root, l } = makeAnyChain(n);
    const t1 = now();
    root.abort();
    const t2 = now();
    if (!l[n - 1].aborted) throw new Error('chain: the leaf was not aborted');
    if (r > 0) { vc.push(nsPer(t0, t1, n)); vt.push(nsPer(t1, t2, n)); }
  }
  const note = `depth=${n} AbortSignal.any chain (flattened: every link depends on the root)`;
  emit('chain.create', 'ns/link', vc, note);
  emit('chain.trigger', 'ns/link', vt, note);
}

// ---- 3. churn ---------------------------------------------------------

function benchChurn(form) {
  progress(`churn (${form})`);
  const n = churnN;
  const parent = new AbortController();
  const ps = parent.signal;
  let sink = null;
  const cycle = form === 'any'
    ? () => { sink = AbortSignal.any([ps]); }
    : () => {
      const k = listenerChild(ps);
      ps.removeEventListener('abort', k.f);
      sink = k;
    };
  for (let i = 0; i < 1000; i++) cycle();
  gc();
  const vt = [], vm = [];
  for (let r = 0; r < reps; r++) {
    const m0 = rssBytes();
    const t0 = now();
    for (let i = 0; i < n; i++) cycle();
    const t1 = now();
    const m1 = rssBytes();
    vt.push(nsPer(t0, t1, n));
    vm.push((m1 - m0) / 1024);
  }
  if (sink === null) throw new Error('churn did nothing');
  const key = form === 'any' ? 'churn' : 'churn_listener';
  const what = form === 'any' ? 'AbortSignal.any([parent]) then dropped'
    : "AbortController + 'abort' listener on parent; removeEventListener";
  emit(key, 'ns/cycle', vt, `n=${n} ${what}`);
  emit(`${key}.rss`, 'KiB', vm, 'RSS after minus RSS before the loop (GC heap)');
}

// ---- 4. memory --------------------------------------------------------

function benchMemory() {
  progress('memory');
  const n = memN;
  const kids = new Array(n).fill(null);
  const keys = ['memory.token', 'memory.child', 'memory.link'];
  const what = ['new AbortController()', 'AbortSignal.any([root]) children of one root',
    'AbortSignal.any chain'];
  for (let kind = 0; kind < 3; kind++) {
    const v = [];
    for (let r = 0; r < reps; r++) {
      const root = new AbortController();
      kids.fill(null);
      gc();
      const m0 = rssBytes();
      for (let i = 0; i < n; i++) {
        if (kind === 0) kids[i] = new AbortController();
        else kids[i] = anyChild(kind === 2 && i > 0 ? kids[i - 1] : root.signal);
      }
      const m1 = rssBytes();
      v.push((m1 - m0) / n);
      root.abort();
    }
    emit(keys[kind], 'B/token', v, `n=${n} ${what[kind]}; RSS with GC heap overhead`);
  }
  kids.fill(null);
  gc();
}

console.log(`# node_bench quick=${Q ? 1 : 0} reps=${reps} check_iters=${checkIters} fanout_n=${fanoutN} chain_n=${chainN} churn_n=${churnN} mem_n=${memN}`);
console.log(`# version: Node ${process.version}${globalThis.gc ? '' : ' (run without --expose-gc: no forced collections)'}`);
if (typeof AbortSignal.any !== 'function') {
  console.log('# AbortSignal.any is missing (Node < 20.3): nothing to measure');
  process.exit(3);
}
if (selected('memory')) benchMemory();
if (selected('check')) benchCheck();
if (selected('fanout')) { benchFanout('any'); benchFanout('listener'); }
if (selected('chain')) benchChain();
if (selected('churn')) { benchChurn('any'); benchChurn('listener'); }
