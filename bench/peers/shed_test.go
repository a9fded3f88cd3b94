package peers

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeromicro/go-zero/core/logx"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/svckit/svckit/internal/proc"
)

// The test binary is also the server: run with serverEnv set, it serves
// instead of testing. go-zero and kratos start goroutines from their inits
// (CPU sampling), which this package does not own: IgnoreCurrent, taken
// before the tests, leaves those out.
func TestMain(m *testing.M) {
	// go-zero's core/stat, linked in with its shedder, logs the process's
	// CPU and memory every minute from an init, in the server and here.
	logx.Disable()
	if os.Getenv(serverEnv) != "" {
		if err := runServer(); err != nil {
			fmt.Fprintln(os.Stderr, "shedbench server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(benchEnv) != "1" {
		fmt.Printf("a benchmark of minutes, not run: set %s=1 (with -short, a smoke run of one round)\n", benchEnv)
		os.Exit(0)
	}
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// benchEnv must be 1 for TestShedding to run: it takes minutes. onlyEnv,
// if set, lists the protections to run (comma-separated), for a quicker
// look at some.
const (
	benchEnv = "SVCKIT_SHED_BENCH"
	onlyEnv  = "SVCKIT_SHED_ONLY"
)

// plan is how long each part of the benchmark runs.
type plan struct {
	rounds          int
	warm, over, rec time.Duration
}

var (
	fullPlan  = plan{rounds: 5, warm: 1500 * time.Millisecond, over: 3 * time.Second, rec: 2500 * time.Millisecond}
	shortPlan = plan{rounds: 1, warm: time.Second, over: 1500 * time.Millisecond, rec: 1500 * time.Millisecond}
)

// Offered loads, as multiples of the unloaded peak; between overloads
// and around them the load is calm.
var (
	loads       = []float64{1, 2, 5}
	calm        = 0.5
	protections = []string{none, goZero, kratos, svckit}
)

// deadline is every call's: generous, so that an unprotected server's
// queue, not the deadline, decides how long its calls take.
const deadline = time.Second

// baseline is the unloaded server: the peak of calls per second with four
// callers in a closed loop, and the latency of one caller alone.
type baseline struct {
	peak     float64
	p50, p99 time.Duration
}

// TestShedding is the side-by-side benchmark of load shedding (see the
// package doc): it measures, and fails only when the run is invalid.
func TestShedding(t *testing.T) {
	pl := fullPlan
	if testing.Short() {
		pl = shortPlan
	}
	protections := protections
	if only := os.Getenv(onlyEnv); only != "" {
		protections = strings.Split(only, ",")
	}
	start := time.Now()
	iters := calibrate()
	base := measureBaseline(t, iters)
	t.Logf("1 ms of CPU = %d rounds of the loop; unloaded: peak %.0f calls/s, p50 %s, p99 %s", iters, base.peak, ms(base.p50), ms(base.p99))
	results := map[string][]outcome{}
	for r := range pl.rounds {
		for _, load := range loads {
			for i := range protections {
				p := protections[(i+r)%len(protections)]
				o := runOne(t, p, load, iters, base, pl)
				results[key(p, load)] = append(results[key(p, load)], o)
				t.Logf("round %d, %s at %gx: %s", r+1, p, load, o)
			}
		}
	}
	fmt.Print(table(results, protections, base, pl, time.Since(start)))
	if runtime.NumCPU() >= 2 {
		fmt.Print(quotaTable(t, iters, base, pl))
	}
}

func key(p string, load float64) string { return fmt.Sprintf("%s@%g", p, load) }

// calibrate returns how many rounds of spin take 1 ms: the fastest of 20
// measures of 10 ms, so that a measure the machine interrupted does not
// count.
func calibrate() int {
	const n = 1_000_000
	best := time.Duration(math.MaxInt64)
	for range 20 {
		t := time.Now()
		spin(n)
		best = min(best, time.Since(t))
	}
	return int(float64(n) * float64(time.Millisecond) / float64(best))
}

// measureBaseline runs an unprotected server unloaded, three times: one
// caller for the latency, then four for the peak. The machine only ever
// takes capacity away, so the best of the three counts: the highest peak,
// and the latencies of the run of one caller with the lowest p99.
func measureBaseline(t *testing.T, iters int) baseline {
	cc, stop := startServer(t, none, iters)
	defer stop()
	closedLoop(cc, 1, 500*time.Millisecond) // warm up
	best := baseline{p99: math.MaxInt64}
	for range 3 {
		one, failed := closedLoop(cc, 1, time.Second)
		four, failed4 := closedLoop(cc, 4, time.Second)
		if failed+failed4 > 0 || len(one) == 0 || len(four) == 0 {
			t.Fatalf("unloaded: %d and %d calls failed, %d and %d succeeded", failed, failed4, len(one), len(four))
		}
		slices.Sort(one)
		best.peak = max(best.peak, float64(len(four)))
		if p99 := pct(one, 99); p99 < best.p99 {
			best.p50, best.p99 = pct(one, 50), p99
		}
	}
	return best
}

// startServer starts the test binary as a server with protection p, held
// to one core by GOMAXPROCS=1 on a machine of more (not pinned: on a
// machine shared with other work, a pinned server waits for its core while
// another is free). It returns a connection to it, and stop, which closes
// both (at the latest when t ends).
func startServer(t *testing.T, p string, iters int) (cc *grpc.ClientConn, stop func()) {
	t.Helper()
	pr, err := proc.Start(os.Args[0], nil, []string{serverEnv + "=" + p, itersEnv + "=" + strconv.Itoa(iters), "GOMAXPROCS=1"})
	if err != nil {
		t.Fatal(err)
	}
	cc, _, stop = startProcess(t, p, pr)
	return cc, stop
}

// startProcess waits until the server pr, of protection p, serves, and
// returns a connection to it, its admin address, and stop.
func startProcess(t *testing.T, p string, pr *proc.Proc) (cc *grpc.ClientConn, admin string, stop func()) {
	t.Helper()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if cc != nil {
				cc.Close()
			}
			if code := pr.Stop(syscall.SIGTERM, 10*time.Second); code != 0 && !t.Failed() {
				t.Errorf("server %s exited %d:\n%s", p, code, pr.Output())
			}
		})
	}
	t.Cleanup(stop)
	addr, admin, err := pr.WaitServing(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if cc, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	return cc, admin, stop
}

// runOne runs one server with protection p through a calm start, an
// overload of load times the peak, and a calm end.
func runOne(t *testing.T, p string, load float64, iters int, base baseline, pl plan) outcome {
	t.Helper()
	cc, stop := startServer(t, p, iters)
	defer stop()
	closedLoop(cc, 1, 200*time.Millisecond) // connect and warm up
	calls := offer(cc, []phase{{calm * base.peak, pl.warm}, {load * base.peak, pl.over}, {calm * base.peak, pl.rec}}, deadline)
	return measure(t, calls, base, pl)
}

// outcome is what one run measured during the overload, and after.
type outcome struct {
	goodput   float64       // successful calls per second
	p50, p99  time.Duration // of successful calls
	rejected  float64       // share of calls shed (RESOURCE_EXHAUSTED)
	rejectP50 time.Duration // of shed calls; 0 if none
	missed    float64       // share of calls past their deadline
	other     float64       // share of calls failed otherwise
	recovery  time.Duration // after the overload; +Inf as math.MaxInt64
	lag       time.Duration // the generator's p99 lateness, over the run
}

func (o outcome) String() string {
	return fmt.Sprintf("goodput %.0f/s, p50 %s p99 %s, shed %.1f%% (p50 %s), missed %.1f%%, other %.1f%%, recovery %s; generator lag p99 %s ms",
		o.goodput, ms(o.p50), ms(o.p99), 100*o.rejected, ms(o.rejectP50), 100*o.missed, 100*o.other, secs(o.recovery), ms(o.lag))
}

// measure computes a run's outcome. It logs when the generator was late
// by more than 20 ms for more than 1 % of the calls: then the machine, or
// the backlog of a server that queues every call (none and the peers at
// 2× and 5×: thousands of calls in flight in the generator), set the pace
// too; the outcome keeps the lag, printed with it.
func measure(t *testing.T, calls []call, base baseline, pl plan) outcome {
	t.Helper()
	var ok, shed, lags []time.Duration
	var n, missed, other, late int
	for _, c := range calls {
		lags = append(lags, c.lag)
		if c.lag > 20*time.Millisecond {
			late++
		}
		if c.phase != 1 {
			continue
		}
		n++
		switch {
		case c.code == codes.OK:
			ok = append(ok, c.lat)
		case c.code == codes.ResourceExhausted && !c.full:
			shed = append(shed, c.lat)
		case c.code == codes.DeadlineExceeded || c.full:
			missed++
		default:
			other++
		}
	}
	if late*100 > len(calls) {
		t.Logf("the load generator was late by over 20 ms for %d of %d calls (its p99 lag is printed with the run)", late, len(calls))
	}
	slices.Sort(ok)
	slices.Sort(shed)
	slices.Sort(lags)
	return outcome{
		goodput: float64(len(ok)) / pl.over.Seconds(),
		p50:     pct(ok, 50), p99: pct(ok, 99),
		rejected: float64(len(shed)) / float64(n), rejectP50: pct(shed, 50),
		missed: float64(missed) / float64(n), other: float64(other) / float64(n),
		recovery: recovery(calls, base),
		lag:      pct(lags, 99),
	}
}

// Recovery is measured in windows of recoveryWindow by scheduled start,
// from the end of the overload: the first window that begins
// recoveryRun good windows in a row, each with every call successful and
// a p99 within recoveryP99 of the unloaded p99 (the bound the issue sets
// for the calls admitted during an overload).
const (
	recoveryWindow = 100 * time.Millisecond
	recoveryRun    = 3
	recoveryP99    = 3
)

// recovery returns when the server recovered after the overload, or
// math.MaxInt64 if it did not by the end of the run.
func recovery(calls []call, base baseline) time.Duration {
	var from time.Duration = -1
	windows := map[int][]call{}
	last := 0
	for _, c := range calls {
		if c.phase != 2 {
			continue
		}
		if from < 0 {
			from = c.at
		}
		w := int((c.at - from) / recoveryWindow)
		windows[w] = append(windows[w], c)
		last = max(last, w)
	}
	good := func(w int) bool {
		cs := windows[w]
		var lats []time.Duration
		for _, c := range cs {
			if c.code != codes.OK {
				return false
			}
			lats = append(lats, c.lat)
		}
		slices.Sort(lats)
		return len(lats) > 0 && pct(lats, 99) <= recoveryP99*base.p99
	}
	run := 0
	for w := 0; w <= last; w++ {
		if !good(w) {
			run = 0
			continue
		}
		if run++; run == recoveryRun {
			return time.Duration(w-recoveryRun+1) * recoveryWindow
		}
	}
	return math.MaxInt64
}

// pct returns the p-th percentile of sorted, 0 if empty.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }

func secs(d time.Duration) string {
	if d == math.MaxInt64 {
		return "never"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
}

// table formats the results as markdown: for each protection and load,
// the median of the rounds and, with more than one, [min–max].
func table(results map[string][]outcome, protections []string, base baseline, pl plan, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nUnloaded: peak %.0f calls/s (4 callers), p50 %s ms, p99 %s ms (1 caller); %d rounds of %s calm, %s overload, %s calm; deadline %s; took %s.\n\n",
		base.peak, ms(base.p50), ms(base.p99), pl.rounds, pl.warm, pl.over, pl.rec, deadline, took.Round(time.Second))
	b.WriteString("| protection | offered | goodput, calls/s | % of peak | p50 ms | p99 ms | shed % | shed p50 ms | missed deadline % | recovery s |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, load := range loads {
		for _, p := range protections {
			runs := results[key(p, load)]
			col := func(f func(outcome) float64, format func(float64) string) string { return spread(runs, f, format) }
			fmt.Fprintf(&b, "| %s | %g× | %s | %s | %s | %s | %s | %s | %s | %s |\n", p, load,
				col(func(o outcome) float64 { return o.goodput }, num(0)),
				col(func(o outcome) float64 { return 100 * o.goodput / base.peak }, num(0)),
				col(func(o outcome) float64 { return float64(o.p50) / 1e6 }, num(1)),
				col(func(o outcome) float64 { return float64(o.p99) / 1e6 }, num(1)),
				col(func(o outcome) float64 { return 100 * o.rejected }, num(1)),
				col(func(o outcome) float64 { return float64(o.rejectP50) / 1e6 }, num(2)),
				col(func(o outcome) float64 { return 100 * (o.missed + o.other) }, num(1)),
				col(func(o outcome) float64 {
					if o.recovery == math.MaxInt64 {
						return math.Inf(1)
					}
					return o.recovery.Seconds()
				}, num(1)))
		}
	}
	return b.String()
}

// num formats with d decimals; +Inf as "never".
func num(d int) func(float64) string {
	return func(v float64) string {
		if math.IsInf(v, 1) {
			return "never"
		}
		return strconv.FormatFloat(v, 'f', d, 64)
	}
}

// spread is the median of f over runs and, with more than one, [min–max].
func spread(runs []outcome, f func(outcome) float64, format func(float64) string) string {
	if len(runs) == 0 {
		return "–"
	}
	vs := make([]float64, len(runs))
	for i, o := range runs {
		vs[i] = f(o)
	}
	slices.Sort(vs)
	med := vs[len(vs)/2]
	if len(vs)%2 == 0 {
		med = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
	}
	if len(vs) == 1 {
		return format(med)
	}
	return fmt.Sprintf("%s [%s–%s]", format(med), format(vs[0]), format(vs[len(vs)-1]))
}
