// SPDX-License-Identifier: MIT
//! rust_bench: the tokio-util side of the libcanceltoken benchmark suite.
//! It times the workloads of ../../ct_bench.c written the way a Rust
//! program writes them with `tokio_util::sync::CancellationToken`, and
//! prints them in the `key,unit,median,min,max,note` format of
//! ../../bench_util.h so that ../../run.py can join them.
//!
//! Design notes.
//! - A child is `parent.child_token()`; destroy is `drop` (a child that is
//!   dropped before its parent is cancelled unlinks itself from the
//!   parent's list).  A check is `is_cancelled()`, which in tokio-util 0.7
//!   locks the node's mutex.  A trigger is `cancel()`, which cancels the
//!   whole subtree before it returns.  A wait is `cancelled().await`.
//! - Rust uses the C allocator (glibc malloc), so the heap-layout recipe
//!   of bench_util.h applies as it is: `malloc_trim(0)` before a fresh
//!   generation, and the same fixed-seed shuffle for a scattered one.
//! - Memory is the RSS growth from /proc/self/statm, as on every side.
//! - The wake-up harness is bench_util.h's bu_wake_run rewritten: the
//!   waiter thread blocks in a current-thread runtime's `block_on`, and
//!   every round waits until that thread sleeps in the kernel ('S' in
//!   /proc/self/task/TID/stat) before the trigger is timed.  A second
//!   one-CPU figure times a task switch inside one runtime (key
//!   wake_1cpu.task), the analogue of Go's GOMAXPROCS=1 figure.
//! - A CancellationToken has no deadline and no descriptor, so the
//!   deadline, epoll and poll workloads are not run.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

struct Config {
    quick: bool,
    reps: usize,
    check_iters: usize,
    fanout_n: usize,
    chain_n: usize,
    churn_n: usize,
    mem_n: usize,
    wake_rounds: usize,
    only: Option<Vec<String>>,
}

impl Config {
    fn selected(&self, g: &str) -> bool {
        match &self.only {
            None => true,
            Some(v) => v.iter().any(|x| x == g),
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: rust_bench [--quick] [--reps N] [--only GROUP[,GROUP...]]\n\
         groups: memory check fanout chain churn wake\n\
         prints key,unit,median,min,max,note lines on stdout"
    );
    std::process::exit(2);
}

fn parse_args() -> Config {
    let mut quick = false;
    let mut reps = 0usize;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--reps" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) => reps = n,
                None => usage(),
            },
            "--only" => match args.next() {
                Some(v) => only = Some(v.split(',').map(String::from).collect()),
                None => usage(),
            },
            _ => usage(),
        }
    }
    // Sizes as in bench_util.h's bu_parse_args, except the check loops:
    // is_cancelled() takes a mutex, so a tenth of the iterations give the
    // same precision in a tenth of the time (as go_bench does).
    let mut c = if quick {
        Config { quick, reps: 3, check_iters: 500_000, fanout_n: 100_000, chain_n: 10_000,
                 churn_n: 100_000, mem_n: 100_000, wake_rounds: 200, only }
    } else {
        Config { quick, reps: 5, check_iters: 10_000_000, fanout_n: 1_000_000,
                 chain_n: 100_000, churn_n: 1_000_000, mem_n: 1_000_000,
                 wake_rounds: 2000, only }
    };
    if reps > 0 {
        c.reps = reps;
    }
    c
}

fn progress(what: &str) {
    eprintln!("rust_bench: {what}");
}

fn die(what: &str) -> ! {
    eprintln!("rust_bench: fatal: {what}");
    std::process::exit(2);
}

/// One result line: the median, min and max of v (sorted in place).
fn emit(key: &str, unit: &str, v: &mut [f64], note: &str) {
    if v.is_empty() {
        return;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    let med = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    println!("{key},{unit},{med:.4},{:.4},{:.4},{}", v[0], v[n - 1], note.replace(',', ";"));
}

fn ns_per(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n as f64
}

/// Resident set size in bytes, from /proc/self/statm (second field, pages).
fn rss_bytes() -> f64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = s.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(-1.0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    pages * page
}

/// Give freed heap pages back to the kernel (bench_util.h's bu_trim).
fn trim() {
    // SAFETY: malloc_trim only walks glibc's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The permutation of bench_util.h's bu_shuffle (same generator and seed).
fn shuffle(n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (2..=n).rev() {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let j = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) % i as u64) as usize;
        idx.swap(i - 1, j);
    }
    idx
}

// ---- 1. check cost ---------------------------------------------------------

#[inline(never)]
fn check_loop(t: &CancellationToken, n: usize) -> usize {
    let mut hits = 0;
    for _ in 0..n {
        if t.is_cancelled() {
            hits += 1;
        }
    }
    hits
}

fn time_check(t: &CancellationToken, n: usize) -> f64 {
    let t0 = Instant::now();
    if check_loop(t, n) != 0 {
        die("check loop saw a cancelled token");
    }
    ns_per(t0.elapsed(), n)
}

/// root -> l[0] -> ... -> l[depth-1], each a child of the previous one.
fn make_chain(depth: usize) -> (CancellationToken, Vec<CancellationToken>) {
    let root = CancellationToken::new();
    let mut l: Vec<CancellationToken> = Vec::with_capacity(depth);
    for i in 0..depth {
        let next = if i == 0 { root.child_token() } else { l[i - 1].child_token() };
        l.push(next);
    }
    (root, l)
}

fn bench_check(c: &Config) {
    progress("check");
    let mut v = vec![0.0; c.reps];
    let t = CancellationToken::new();
    time_check(&t, c.check_iters / 10);
    for x in v.iter_mut() {
        *x = time_check(&t, c.check_iters);
    }
    emit("check.plain", "ns/check", &mut v, "is_cancelled() on CancellationToken::new()");
    for depth in [10usize, 100, 10000] {
        let (root, l) = make_chain(depth);
        let leaf = &l[depth - 1];
        time_check(leaf, c.check_iters / 10);
        for x in v.iter_mut() {
            *x = time_check(leaf, c.check_iters);
        }
        emit(&format!("check.depth{depth}"), "ns/check", &mut v,
             "is_cancelled() on the leaf of a child_token() chain");
        drop(root);
    }
}

// ---- 2. fan-out and deep chain ---------------------------------------------

/// One root with n children, two generations per repetition (bench_util.h,
/// "heap layout"): fresh (trimmed heap; destroyed in a random order), then
/// recycled (scattered addresses; destroyed in creation order).
fn bench_fanout(c: &Config) {
    progress("fanout");
    let n = c.fanout_n;
    let names = ["create", "trigger", "destroy_random", "create_recycled", "trigger_recycled",
                 "destroy"];
    let mut v: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let perm = shuffle(n);
    let mut kids: Vec<Option<CancellationToken>> = Vec::with_capacity(n);
    kids.resize_with(n, || None);
    for _ in 0..c.reps {
        for generation in 0..2 {
            if generation == 0 {
                trim();
            }
            let root = CancellationToken::new();
            let t0 = Instant::now();
            for k in kids.iter_mut() {
                *k = Some(root.child_token());
            }
            let t1 = Instant::now();
            root.cancel();
            let t2 = Instant::now();
            if kids.iter().any(|k| !k.as_ref().unwrap().is_cancelled()) {
                die("fanout: a child was not cancelled by its root");
            }
            let t3 = Instant::now();
            if generation == 0 {
                for &i in perm.iter() {
                    kids[i] = None;
                }
            } else {
                for k in kids.iter_mut() {
                    *k = None;
                }
            }
            drop(root);
            let t4 = Instant::now();
            v[3 * generation].push(ns_per(t1 - t0, n));
            v[3 * generation + 1].push(ns_per(t2 - t1, n));
            v[3 * generation + 2].push(ns_per(t4 - t3, n));
        }
    }
    let note = format!("n={n} child = root.child_token(); trigger = root.cancel(); destroy = drop");
    for (k, name) in names.iter().enumerate() {
        emit(&format!("fanout.{name}"), "ns/child", &mut v[k], &note);
    }
}

fn bench_chain(c: &Config) {
    progress("deep chain");
    let n = c.chain_n;
    let (mut vc, mut vt, mut vd) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..=c.reps {
        // repetition 0 is a warm-up, as in ct_bench
        let t0 = Instant::now();
        let (root, l) = make_chain(n);
        let t1 = Instant::now();
        root.cancel();
        let t2 = Instant::now();
        if !l[n - 1].is_cancelled() {
            die("chain: the leaf was not cancelled by the root");
        }
        let t3 = Instant::now();
        // Dropped in creation order, root first, as ct_bench's free_chain.
        drop(root);
        drop(l);
        let t4 = Instant::now();
        if r > 0 {
            vc.push(ns_per(t1 - t0, n));
            vt.push(ns_per(t2 - t1, n));
            vd.push(ns_per(t4 - t3, n));
        }
    }
    let note = format!("depth={n} child_token() chain; cancel walks the tree iteratively");
    emit("chain.create", "ns/link", &mut vc, &note);
    emit("chain.trigger", "ns/link", &mut vt, &note);
    emit("chain.destroy", "ns/link", &mut vd, &note);
}

// ---- 3. churn ----------------------------------------------------------------

#[inline(never)]
fn churn_once(parent: &CancellationToken) {
    let child = parent.child_token();
    drop(child);
}

fn bench_churn(c: &Config) {
    progress("churn");
    let n = c.churn_n;
    let parent = CancellationToken::new();
    for _ in 0..1000 {
        churn_once(&parent);
    }
    let mut vt = vec![0.0; c.reps];
    let mut vm = vec![0.0; c.reps];
    for r in 0..c.reps {
        let m0 = rss_bytes();
        let t0 = Instant::now();
        for _ in 0..n {
            churn_once(&parent);
        }
        let d = t0.elapsed();
        let m1 = rss_bytes();
        vt[r] = ns_per(d, n);
        vm[r] = (m1 - m0) / 1024.0;
    }
    if parent.is_cancelled() {
        die("churn: the parent was cancelled");
    }
    emit("churn", "ns/cycle", &mut vt, &format!("n={n} parent.child_token() + drop"));
    emit("churn.rss", "KiB", &mut vm, "RSS after minus RSS before the loop");
}

// ---- 4. memory ---------------------------------------------------------------

fn bench_memory(c: &Config) {
    progress("memory");
    let n = c.mem_n;
    let mut kids: Vec<Option<CancellationToken>> = Vec::with_capacity(n);
    kids.resize_with(n, || None); // the holding array, touched first
    for (kind, key, what) in [(0, "memory.token", "CancellationToken::new()"),
                              (1, "memory.child", "root.child_token() children of one root"),
                              (2, "memory.link", "chain of child_token()")] {
        let mut v = vec![0.0; c.reps];
        for x in v.iter_mut() {
            let root = CancellationToken::new();
            trim();
            let m0 = rss_bytes();
            for i in 0..n {
                let t = match kind {
                    0 => CancellationToken::new(),
                    2 if i > 0 => kids[i - 1].as_ref().unwrap().child_token(),
                    _ => root.child_token(),
                };
                kids[i] = Some(t);
            }
            let m1 = rss_bytes();
            *x = (m1 - m0) / n as f64;
            for k in kids.iter_mut() {
                *k = None;
            }
            drop(root);
        }
        emit(key, "B/token", &mut v, &format!("n={n} {what}"));
    }
}

// ---- 5. wake-up latency ----------------------------------------------------

fn gettid() -> i64 {
    // SAFETY: the gettid system call has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i64 }
}

/// The first two CPUs this process may run on, and how many there are.
fn two_cpus() -> (usize, [usize; 2]) {
    let mut cpus = [0usize; 2];
    let mut n = 0;
    // SAFETY: set is a plain bit mask, zeroed, and its size is passed.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (1, cpus);
        }
        for i in 0..libc::CPU_SETSIZE as usize {
            if n < 2 && libc::CPU_ISSET(i, &set) {
                cpus[n] = i;
                n += 1;
            }
        }
    }
    (n, cpus)
}

/// Pin the calling thread to one CPU.
fn pin_self(cpu: usize) {
    // SAFETY: as above; pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The scheduler state letter of one of our threads, or '?'.
fn thread_state(tid: i64) -> u8 {
    let s = match std::fs::read(format!("/proc/self/task/{tid}/stat")) {
        Ok(s) => s,
        Err(_) => return b'?',
    };
    // The command name may contain anything: the state follows the last ')'.
    match s.iter().rposition(|&b| b == b')') {
        Some(p) if p + 2 < s.len() && s[p + 1] == b' ' => s[p + 2],
        _ => b'?',
    }
}

/// What the trigger and the waiter share.  Every counter is published with
/// Release and read with Acquire, so that what was written before a store
/// (the token in `slot`, the waiter's time in `woke`) is visible to the
/// thread that sees the new count.
struct WakeShared {
    go: AtomicUsize,
    ready: AtomicUsize,
    done: AtomicUsize,
    tid: AtomicI64,
    woke: AtomicU64,
    slot: Mutex<Option<CancellationToken>>,
    base: Instant,
}

/// bu_wake_run for one variant: the waiter blocks in block_on(cancelled())
/// of a current-thread runtime on its own thread; returns the sorted
/// latencies in ns and how many rounds the waiter was not seen asleep.
fn wake_thread_run(rounds: usize, trigger_cpu: usize, waiter_cpu: usize) -> (Vec<f64>, usize) {
    let s = Arc::new(WakeShared {
        go: AtomicUsize::new(0),
        ready: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        tid: AtomicI64::new(0),
        woke: AtomicU64::new(0),
        slot: Mutex::new(None),
        base: Instant::now(),
    });
    let sw = Arc::clone(&s);
    let waiter = std::thread::spawn(move || {
        pin_self(waiter_cpu);
        let rt = tokio::runtime::Builder::new_current_thread().build()
            .unwrap_or_else(|_| die("tokio runtime"));
        sw.tid.store(gettid(), Ordering::Release);
        for i in 0..rounds {
            while sw.go.load(Ordering::Acquire) != i + 1 {
                std::thread::yield_now();
            }
            let t = sw.slot.lock().unwrap().clone().unwrap();
            sw.ready.store(i + 1, Ordering::Release);
            rt.block_on(t.cancelled());
            sw.woke.store(sw.base.elapsed().as_nanos() as u64, Ordering::Release);
            sw.done.store(i + 1, Ordering::Release);
        }
    });
    pin_self(trigger_cpu);
    while s.tid.load(Ordering::Acquire) == 0 {
        std::thread::yield_now();
    }
    let tid = s.tid.load(Ordering::Acquire);
    let mut lat = Vec::with_capacity(rounds);
    let mut unsettled = 0;
    for i in 0..rounds {
        let t = CancellationToken::new();
        *s.slot.lock().unwrap() = Some(t.clone());
        s.go.store(i + 1, Ordering::Release);
        while s.ready.load(Ordering::Acquire) != i + 1 {
            std::thread::yield_now();
        }
        // Wait (at most ~1 s) until the waiter sleeps in the kernel.
        let mut tries = 0;
        while thread_state(tid) != b'S' {
            tries += 1;
            if tries > 100_000 {
                unsettled += 1;
                break;
            }
            if tries > 100 {
                std::thread::sleep(Duration::from_micros(10));
            } else {
                std::thread::yield_now();
            }
        }
        let t0 = s.base.elapsed().as_nanos() as u64;
        t.cancel();
        while s.done.load(Ordering::Acquire) != i + 1 {
            std::thread::yield_now();
        }
        lat.push(s.woke.load(Ordering::Acquire).saturating_sub(t0) as f64);
        *s.slot.lock().unwrap() = None;
    }
    waiter.join().unwrap_or_else(|_| die("waiter thread panicked"));
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (lat, unsettled)
}

/// One CPU, one runtime: a spawned task awaits cancelled(); the main task
/// waits until it is parked there, then times cancel() until the task has
/// run.  A task switch inside the runtime, with no system call.
fn wake_task_run(rounds: usize, cpu: usize) -> Vec<f64> {
    pin_self(cpu);
    let rt = tokio::runtime::Builder::new_current_thread().build()
        .unwrap_or_else(|_| die("tokio runtime"));
    rt.block_on(async {
        let mut lat = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = CancellationToken::new();
            let t2 = t.clone();
            // One thread: the flag is set just before the task's first
            // await, so once it is seen the task is parked in cancelled().
            let parked = Arc::new(AtomicBool::new(false));
            let p2 = Arc::clone(&parked);
            let h = tokio::spawn(async move {
                p2.store(true, Ordering::Relaxed);
                t2.cancelled().await;
                Instant::now()
            });
            while !parked.load(Ordering::Relaxed) {
                tokio::task::yield_now().await;
            }
            let t0 = Instant::now();
            t.cancel();
            let woke = h.await.unwrap_or_else(|_| die("task panicked"));
            lat.push((woke - t0).as_nanos() as f64);
        }
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        lat
    })
}

const PCTS: [(&str, f64); 7] = [("p10", 0.10), ("p25", 0.25), ("p50", 0.50), ("p75", 0.75),
                                ("p90", 0.90), ("p95", 0.95), ("p99", 0.99)];

/// Nearest-rank percentile, as bench_util.h's bu_percentile.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = ((q * n as f64 + 0.999999) as usize).clamp(1, n);
    sorted[rank - 1]
}

fn emit_pcts(pfx: &str, name: &str, v: &mut [Vec<f64>], note: &str) {
    for (j, (p, _)) in PCTS.iter().enumerate() {
        emit(&format!("{pfx}.{name}.{p}"), "ns", &mut v[j], note);
    }
}

fn bench_wake(c: &Config, same_cpu: bool) {
    let (ncpu, cpus) = two_cpus();
    if !same_cpu && ncpu < 2 {
        println!("# wake (cross-CPU) skipped: only one CPU available");
        return;
    }
    progress(if same_cpu { "wake-up latency (same CPU)" } else { "wake-up latency (cross-CPU)" });
    let (tcpu, wcpu) = (cpus[0], if same_cpu { cpus[0] } else { cpus[1] });
    let pfx = if same_cpu { "wake_1cpu" } else { "wake" };
    wake_thread_run(c.wake_rounds / 10, tcpu, wcpu);
    let mut v: Vec<Vec<f64>> = vec![Vec::new(); PCTS.len()];
    let mut unsettled = 0;
    for _ in 0..c.reps {
        let (lat, u) = wake_thread_run(c.wake_rounds, tcpu, wcpu);
        unsettled += u;
        for (j, (_, q)) in PCTS.iter().enumerate() {
            v[j].push(percentile(&lat, *q));
        }
    }
    let warn = if unsettled > 0 {
        format!("; WARNING: {unsettled} rounds fired before the waiter slept")
    } else {
        String::new()
    };
    emit_pcts(pfx, "wait", &mut v, &format!(
        "block_on(cancelled()) <- cancel(); current-thread runtime on the waiter's thread; \
         rounds={}{warn}", c.wake_rounds));
    if same_cpu {
        wake_task_run(c.wake_rounds / 10, tcpu);
        let mut v: Vec<Vec<f64>> = vec![Vec::new(); PCTS.len()];
        for _ in 0..c.reps {
            let lat = wake_task_run(c.wake_rounds, tcpu);
            for (j, (_, q)) in PCTS.iter().enumerate() {
                v[j].push(percentile(&lat, *q));
            }
        }
        emit_pcts(pfx, "task", &mut v, &format!(
            "a task awaiting cancelled() <- cancel() from another task of one current-thread \
             runtime; rounds={}", c.wake_rounds));
    }
}

fn main() {
    let c = parse_args();
    println!("# rust_bench quick={} reps={} check_iters={} fanout_n={} chain_n={} churn_n={} \
              mem_n={} wake_rounds={}", c.quick as i32, c.reps, c.check_iters, c.fanout_n,
             c.chain_n, c.churn_n, c.mem_n, c.wake_rounds);
    // build.sh passes the versions it resolved (Cargo.lock) and rustc's.
    println!("# version: tokio-util {} (tokio {}); {}",
             option_env!("CT_TOKIO_UTIL_VERSION").unwrap_or("?"),
             option_env!("CT_TOKIO_VERSION").unwrap_or("?"),
             option_env!("CT_RUSTC_VERSION").unwrap_or("rustc ?"));
    if c.selected("memory") {
        bench_memory(&c);
    }
    if c.selected("check") {
        bench_check(&c);
    }
    if c.selected("fanout") {
        bench_fanout(&c);
    }
    if c.selected("chain") {
        bench_chain(&c);
    }
    if c.selected("churn") {
        bench_churn(&c);
    }
    if c.selected("wake") {
        bench_wake(&c, false);
        bench_wake(&c, true);
    }
}
