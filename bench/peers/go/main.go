// SPDX-License-Identifier: MIT

// Command go_bench is the Go side of the libcanceltoken benchmark suite:
// the workloads of ../../ct_bench.c written the way a Go program writes
// them with package context, printed in the key,unit,median,min,max,note
// format of ../../bench_util.h so that ../../run.py can join them.
//
// Design notes: a child token is context.WithCancel(parent), which registers
// itself in the parent's children map; a check is ctx.Err() (a mutex in Go
// 1.19) or a non-blocking receive on ctx.Done(); a trigger is the
// CancelFunc, which cancels the children synchronously before it returns.
// Memory is the RSS from /proc/self/statm, as on every other side.  Go has
// no destroy step: a dropped context is reclaimed by the collector, whose
// cost lands wherever it happens to run (mostly in create and churn).
// The wake-up workload cannot pin goroutines to CPUs: see benchWake.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

type config struct {
	quick      bool
	reps       int
	checkIters int
	fanoutN    int
	chainN     int
	churnN     int
	memN       int
	wakeRounds int
	only       map[string]bool
}

func parseArgs() config {
	var c config
	var only string
	flag.BoolVar(&c.quick, "quick", false, "few, small repetitions")
	flag.IntVar(&c.reps, "reps", 0, "repetitions of each workload")
	flag.StringVar(&only, "only", "", "comma-separated workload groups")
	flag.Parse()
	// Sizes as in bench_util.h's bu_parse_args, except the check loops:
	// ctx.Err() takes a mutex, so a tenth of the iterations give the same
	// precision in a tenth of the time.
	if c.quick {
		c.checkIters, c.fanoutN, c.chainN = 500000, 100000, 10000
		c.churnN, c.memN, c.wakeRounds = 100000, 100000, 200
		if c.reps == 0 {
			c.reps = 3
		}
	} else {
		c.checkIters, c.fanoutN, c.chainN = 10000000, 1000000, 100000
		c.churnN, c.memN, c.wakeRounds = 1000000, 1000000, 2000
		if c.reps == 0 {
			c.reps = 5
		}
	}
	if only != "" {
		c.only = map[string]bool{}
		for _, g := range strings.Split(only, ",") {
			c.only[g] = true
		}
	}
	return c
}

func (c *config) selected(g string) bool { return c.only == nil || c.only[g] }

func progress(what string) { fmt.Fprintf(os.Stderr, "go_bench: %s\n", what) }

// emit prints one result line: median, min and max of v (sorted in place).
func emit(key, unit string, v []float64, note string) {
	if len(v) == 0 {
		return
	}
	sort.Float64s(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	fmt.Printf("%s,%s,%.4f,%.4f,%.4f,%s\n", key, unit, med, v[0], v[n-1],
		strings.ReplaceAll(note, ",", ";"))
}

// rssBytes reads the resident set size from /proc/self/statm, as
// bench_util.h's bu_rss_bytes does.
func rssBytes() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	var size, res int64
	if _, err := fmt.Sscan(string(b), &size, &res); err != nil {
		return -1
	}
	return float64(res * int64(os.Getpagesize()))
}

// settle collects garbage and returns freed memory to the OS, so that an
// RSS delta taken next counts the new objects only.
func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

func nsPer(d time.Duration, n int) float64 { return float64(d.Nanoseconds()) / float64(n) }

// shuffle: the permutation of bench_util.h's bu_shuffle (same generator and
// seed), so that the random destroy order is the same as on the C sides.
func shuffle(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	x := uint64(0x9e3779b97f4a7c15)
	for i := n; i > 1; i-- {
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		j := int((x * 0x2545f4914f6cdd1d) % uint64(i))
		idx[i-1], idx[j] = idx[j], idx[i-1]
	}
	return idx
}

// ---- 1. check cost ----------------------------------------------------

//go:noinline
func checkErrLoop(ctx context.Context, n int) int {
	hits := 0
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			hits++
		}
	}
	return hits
}

//go:noinline
func checkDoneLoop(ctx context.Context, n int) int {
	hits := 0
	done := ctx.Done()
	for i := 0; i < n; i++ {
		select {
		case <-done:
			hits++
		default:
		}
	}
	return hits
}

func timeCheck(f func(context.Context, int) int, ctx context.Context, n int) float64 {
	t0 := time.Now()
	if f(ctx, n) != 0 {
		panic("check loop saw a cancelled context")
	}
	return nsPer(time.Since(t0), n)
}

// makeChain: root -> l[0] -> ... -> l[depth-1].
func makeChain(depth int) (root context.Context, cancelRoot context.CancelFunc,
	l []context.Context, cancels []context.CancelFunc) {
	root, cancelRoot = context.WithCancel(context.Background())
	l = make([]context.Context, depth)
	cancels = make([]context.CancelFunc, depth)
	prev := root
	for i := range l {
		l[i], cancels[i] = context.WithCancel(prev)
		prev = l[i]
	}
	return
}

func benchCheck(c *config) {
	progress("check")
	type variant struct {
		suffix string
		f      func(context.Context, int) int
		what   string
	}
	vs := []variant{
		{"", checkErrLoop, "ctx.Err() != nil"},
		{"_done", checkDoneLoop, "select { case <-ctx.Done(): default: }"},
	}
	for _, vr := range vs {
		ctx, cancel := context.WithCancel(context.Background())
		v := make([]float64, c.reps)
		timeCheck(vr.f, ctx, c.checkIters/10)
		for r := range v {
			v[r] = timeCheck(vr.f, ctx, c.checkIters)
		}
		emit("check"+vr.suffix+".plain", "ns/check", v, vr.what+" on WithCancel(Background())")
		cancel()
		for _, depth := range []int{10, 100, 10000} {
			_, cancelRoot, l, _ := makeChain(depth)
			leaf := l[depth-1]
			timeCheck(vr.f, leaf, c.checkIters/10)
			for r := range v {
				v[r] = timeCheck(vr.f, leaf, c.checkIters)
			}
			emit(fmt.Sprintf("check%s.depth%d", vr.suffix, depth), "ns/check", v,
				vr.what+" on the leaf of a WithCancel chain")
			cancelRoot()
		}
	}
}

// ---- 2. fan-out and deep chain --------------------------------------

func benchFanout(c *config) {
	progress("fanout")
	n := c.fanoutN
	names := []string{"create", "trigger", "create_recycled", "trigger_recycled"}
	v := make([][]float64, len(names))
	kids := make([]context.Context, n)
	cancels := make([]context.CancelFunc, n)
	perm := shuffle(n)
	gen := func(k int) {
		settleIfFirst := k == 0
		if settleIfFirst {
			settle()
		}
		root, cancelRoot := context.WithCancel(context.Background())
		t0 := time.Now()
		for i := range kids {
			kids[i], cancels[i] = context.WithCancel(root)
		}
		t1 := time.Now()
		cancelRoot()
		t2 := time.Now()
		for i := range kids {
			if kids[i].Err() == nil {
				panic("fanout: a child was not cancelled by its root")
			}
		}
		v[2*k] = append(v[2*k], nsPer(t1.Sub(t0), n))
		v[2*k+1] = append(v[2*k+1], nsPer(t2.Sub(t1), n))
		// Drop the children (random order in the first generation, as
		// on the C sides); the collector reclaims them later.
		for i := range kids {
			j := i
			if k == 0 {
				j = perm[i]
			}
			cancels[j]()
			kids[j], cancels[j] = nil, nil
		}
	}
	for r := 0; r < c.reps; r++ {
		gen(0)
		gen(1)
	}
	for k, name := range names {
		emit("fanout."+name, "ns/child", v[k],
			fmt.Sprintf("n=%d child = WithCancel(root); trigger = root's CancelFunc", n))
	}
}

func benchChain(c *config) {
	progress("deep chain")
	n := c.chainN
	var vc, vt []float64
	for r := 0; r <= c.reps; r++ { // repetition 0 is a warm-up
		t0 := time.Now()
		_, cancelRoot, l, _ := makeChain(n)
		t1 := time.Now()
		cancelRoot()
		t2 := time.Now()
		if l[n-1].Err() == nil {
			panic("chain: the leaf was not cancelled by the root")
		}
		if r > 0 {
			vc = append(vc, nsPer(t1.Sub(t0), n))
			vt = append(vt, nsPer(t2.Sub(t1), n))
		}
	}
	note := fmt.Sprintf("depth=%d WithCancel chain; cancel recurses once per link (growable goroutine stack)", n)
	emit("chain.create", "ns/link", vc, note)
	emit("chain.trigger", "ns/link", vt, note)
}

// ---- 3. churn ---------------------------------------------------------

func benchChurn(c *config) {
	progress("churn")
	n := c.churnN
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	type variant struct {
		key, what string
		f         func()
	}
	vs := []variant{
		{"churn", "WithCancel(parent) + cancel()", func() {
			_, cancel := context.WithCancel(parent)
			cancel()
		}},
		{"churn_deadline", "WithTimeout(parent; 1h) + cancel()", func() {
			_, cancel := context.WithTimeout(parent, time.Hour)
			cancel()
		}},
	}
	for _, vr := range vs {
		for i := 0; i < 1000; i++ {
			vr.f()
		}
		settle()
		vt := make([]float64, c.reps)
		vm := make([]float64, c.reps)
		for r := range vt {
			m0 := rssBytes()
			t0 := time.Now()
			for i := 0; i < n; i++ {
				vr.f()
			}
			d := time.Since(t0)
			m1 := rssBytes()
			vt[r] = nsPer(d, n)
			vm[r] = (m1 - m0) / 1024
		}
		emit(vr.key, "ns/cycle", vt, fmt.Sprintf("n=%d %s", n, vr.what))
		emit(vr.key+".rss", "KiB", vm, "RSS after minus RSS before the loop (GC heap: grows up to GOGC's target then stays)")
	}
}

// ---- 4. memory --------------------------------------------------------

func benchMemory(c *config) {
	progress("memory")
	n := c.memN
	kids := make([]context.Context, n)
	cancels := make([]context.CancelFunc, n)
	for kind, key := range []string{"memory.token", "memory.child", "memory.link"} {
		what := []string{"WithCancel(Background())", "WithCancel(root) children of one root",
			"chain of WithCancel"}[kind]
		v := make([]float64, c.reps)
		for r := range v {
			root, cancelRoot := context.WithCancel(context.Background())
			for i := range kids { // touch the holding slices
				kids[i], cancels[i] = nil, nil
			}
			settle()
			m0 := rssBytes()
			for i := range kids {
				parent := root
				switch {
				case kind == 0:
					parent = context.Background()
				case kind == 2 && i > 0:
					parent = kids[i-1]
				}
				kids[i], cancels[i] = context.WithCancel(parent)
			}
			m1 := rssBytes()
			v[r] = (m1 - m0) / float64(n)
			cancelRoot()
			for i := range kids {
				cancels[i]()
			}
		}
		emit(key, "B/token", v, fmt.Sprintf("n=%d %s; RSS with GC heap overhead", n, what))
	}
	for i := range kids {
		kids[i], cancels[i] = nil, nil
	}
	settle()
}

// ---- 5. wake-up latency ---------------------------------------------

// setAffinity pins the calling OS thread to one CPU (sched_setaffinity(2)
// with pid 0); the caller must hold runtime.LockOSThread.
func setAffinity(cpu int) {
	var mask [16]uint64
	mask[cpu/64] |= 1 << (cpu % 64)
	syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0,
		uintptr(len(mask)*8), uintptr(unsafe.Pointer(&mask[0])))
}

// wakeRun plays rounds as bench_util.h's bu_wake_run: the main goroutine
// makes a fresh context, lets the waiter goroutine block on <-ctx.Done(),
// waits until it has settled, then times cancel() to the waiter's return.
//
// Goroutines cannot be pinned, so the two regimes are made with the
// runtime's own means.  Two CPUs: each goroutine is locked to its own OS
// thread (runtime.LockOSThread), pinned to its own CPU, and after the
// cancel the main goroutine blocks on a channel, as the C harness yields:
// the runtime then hands the processor to the waiter's thread and wakes
// it, a futex wake on the other CPU.  One CPU: GOMAXPROCS=1, nothing
// locked; the main goroutine yields and the waiter runs on the same
// thread, a goroutine switch with no system call -- the mechanism's own
// path in Go.
func wakeRun(rounds int, sameCPU bool, cpus [2]int) []float64 {
	var ready atomic.Int64
	start := make(chan context.Context)
	done := make(chan time.Time)
	lat := make([]float64, rounds)
	go func() {
		if !sameCPU {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			setAffinity(cpus[1])
		}
		for i := 0; i < rounds; i++ {
			ctx := <-start
			ready.Store(int64(i + 1))
			<-ctx.Done()
			done <- time.Now()
		}
	}()
	if !sameCPU {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		setAffinity(cpus[0])
	}
	for i := 0; i < rounds; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		ctx.Done() // make the channel now, untimed
		start <- ctx
		for ready.Load() != int64(i+1) {
			runtime.Gosched()
		}
		if sameCPU {
			// One P: the waiter ran until it parked on the channel, or
			// this goroutine would not be running now.
			runtime.Gosched()
		} else {
			// Give the waiter time to park and its thread time to go to
			// sleep (the C harness watches for the 'S' state instead).
			for t := time.Now(); time.Since(t) < 100*time.Microsecond; {
			}
		}
		t0 := time.Now()
		cancel()
		woke := <-done
		lat[i] = float64(woke.Sub(t0).Nanoseconds())
	}
	sort.Float64s(lat)
	return lat
}

var pcts = []struct {
	name string
	q    float64
}{{"p10", .10}, {"p25", .25}, {"p50", .50}, {"p75", .75}, {"p90", .90}, {"p95", .95}, {"p99", .99}}

// percentile: nearest rank, as bench_util.h's bu_percentile.
func percentile(sorted []float64, q float64) float64 {
	n := len(sorted)
	rank := int(q*float64(n) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	return sorted[rank-1]
}

func benchWake(c *config, sameCPU bool) {
	procs := 2
	pfx := "wake"
	note := "<-ctx.Done() <- cancel(); GOMAXPROCS=2; each goroutine locked to its own OS thread pinned to its own CPU"
	if sameCPU {
		procs, pfx = 1, "wake_1cpu"
		note = "<-ctx.Done() <- cancel(); GOMAXPROCS=1; a goroutine switch on one thread"
		progress("wake-up latency (GOMAXPROCS=1)")
	} else {
		if runtime.NumCPU() < 2 {
			fmt.Println("# wake (cross-CPU) skipped: only one CPU available")
			return
		}
		progress("wake-up latency (2 threads pinned)")
	}
	cpus := [2]int{0, 1}
	old := runtime.GOMAXPROCS(procs)
	defer runtime.GOMAXPROCS(old)
	wakeRun(c.wakeRounds/10, sameCPU, cpus)
	v := make([][]float64, len(pcts))
	for r := 0; r < c.reps; r++ {
		lat := wakeRun(c.wakeRounds, sameCPU, cpus)
		for j, p := range pcts {
			v[j] = append(v[j], percentile(lat, p.q))
		}
	}
	for j, p := range pcts {
		emit(fmt.Sprintf("%s.wait.%s", pfx, p.name), "ns", v[j],
			fmt.Sprintf("%s; rounds=%d", note, c.wakeRounds))
	}
}

func main() {
	c := parseArgs()
	quick := 0
	if c.quick {
		quick = 1
	}
	fmt.Printf("# go_bench quick=%d reps=%d check_iters=%d fanout_n=%d chain_n=%d churn_n=%d mem_n=%d wake_rounds=%d\n",
		quick, c.reps, c.checkIters, c.fanoutN, c.chainN, c.churnN, c.memN, c.wakeRounds)
	fmt.Printf("# version: %s GOMAXPROCS=%d; context.AfterFunc needs Go 1.21 (not used)\n",
		runtime.Version(), runtime.GOMAXPROCS(0))
	if c.selected("memory") {
		benchMemory(&c)
	}
	if c.selected("check") {
		benchCheck(&c)
	}
	if c.selected("fanout") {
		benchFanout(&c)
	}
	if c.selected("chain") {
		benchChain(&c)
	}
	if c.selected("churn") {
		benchChurn(&c)
	}
	if c.selected("wake") {
		benchWake(&c, false)
		benchWake(&c, true)
	}
}
