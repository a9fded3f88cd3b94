package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/proc"
)

// outcome is one call of paced load: when it ended, how long it took, and
// its code.
type outcome struct {
	end  time.Time
	took time.Duration
	code codes.Code
}

// paced is load at a set rate: each worker starts a call every
// workers/rate, or as soon as its last call ends if that took longer,
// until stopped or max calls, the workers evenly out of phase; every
// outcome is kept.
type paced struct {
	started  atomic.Int64
	mu       sync.Mutex
	outcomes []outcome
	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// startPaced runs call at rate calls/s in all from workers goroutines,
// each call under its own timeout, each worker at most max calls.
func startPaced(workers int, rate float64, max int, timeout time.Duration, call func(ctx context.Context, w int) error) *paced {
	p := &paced{done: make(chan struct{})}
	every := time.Duration(float64(workers) * float64(time.Second) / rate)
	for w := range workers {
		p.wg.Go(func() {
			// Workers start a share of the period apart, so that their
			// calls do not arrive together.
			select {
			case <-p.done:
				return
			case <-time.After(every * time.Duration(w) / time.Duration(workers)):
			}
			tick := time.NewTicker(every)
			defer tick.Stop()
			for range max {
				select {
				case <-p.done:
					return
				case <-tick.C:
				}
				p.started.Add(1)
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				err := call(ctx, w)
				cancel()
				end := time.Now()
				p.mu.Lock()
				p.outcomes = append(p.outcomes, outcome{end: end, took: end.Sub(start), code: status.Code(err)})
				p.mu.Unlock()
			}
		})
	}
	return p
}

// waitMore waits up to 30s until n more calls than now have started.
func (p *paced) waitMore(t *testing.T, n int64) {
	t.Helper()
	base := p.started.Load()
	poll.Until(t, 30*time.Second, fmt.Sprintf("%d more calls", n), func() bool { return p.started.Load() >= base+n })
}

// stop ends the load, waits for its workers and returns every outcome; it
// may be called again.
func (p *paced) stop() []outcome {
	p.stopOnce.Do(func() { close(p.done) })
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.outcomes)
}

// snapshot returns the outcomes so far.
func (p *paced) snapshot() []outcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.outcomes)
}

// recovery returns how long after up calls succeeded again: the end of
// the first window of win after up in which at least minCalls calls ended
// and at most 1 % of them failed; false if there is none.
func recovery(outs []outcome, up time.Time, win time.Duration, minCalls int) (time.Duration, bool) {
	type count struct{ ok, all int }
	windows := map[int]*count{}
	last := -1
	for _, o := range outs {
		if o.end.Before(up) {
			continue
		}
		k := int(o.end.Sub(up) / win)
		if windows[k] == nil {
			windows[k] = &count{}
		}
		windows[k].all++
		if o.code == codes.OK {
			windows[k].ok++
		}
		last = max(last, k)
	}
	for k := 0; k <= last; k++ {
		if c := windows[k]; c != nil && c.all >= minCalls && 100*c.ok >= 99*c.all {
			return time.Duration(k+1) * win, true
		}
	}
	return 0, false
}

// tally counts outcomes by code.
func tally(outs []outcome) map[codes.Code]int {
	n := map[codes.Code]int{}
	for _, o := range outs {
		n[o.code]++
	}
	return n
}

// quantile returns the q-quantile of the outcomes' durations.
func quantile(outs []outcome, q float64) time.Duration {
	if len(outs) == 0 {
		return 0
	}
	d := make([]time.Duration, len(outs))
	for i, o := range outs {
		d[i] = o.took
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// attemptCodes is a stats.Handler that counts a conn's call attempts (one
// Begin each, a pick that failed included) and their codes.
type attemptCodes struct {
	begins atomic.Int64
	mu     sync.Mutex
	codes  map[codes.Code]int64
}

func newAttemptCodes() *attemptCodes { return &attemptCodes{codes: map[codes.Code]int64{}} }

func (a *attemptCodes) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (a *attemptCodes) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.Begin:
		if s.Client {
			a.begins.Add(1)
		}
	case *stats.End:
		if s.Client {
			a.mu.Lock()
			a.codes[status.Code(s.Error)]++
			a.mu.Unlock()
		}
	}
}
func (a *attemptCodes) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (a *attemptCodes) HandleConn(context.Context, stats.ConnStats) {}

// code returns the attempts that ended with c so far.
func (a *attemptCodes) code(c codes.Code) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.codes[c]
}

// cgroupDir writes a simulated cgroup v2 whose cpu.max says quota (e.g.
// "10000 100000", a tenth of a core) and returns its root, for
// CHAOS_CGROUP_ROOT.
func cgroupDir(t *testing.T, quota string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": quota + "\n"} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// genReport is the report of testdata/loadgen.
type genReport struct {
	Sent, OK, Shed, Deadline, Other, Skipped int64
	Elapsed                                  time.Duration
	Errors                                   []string
}

var (
	genSending = regexp.MustCompile(`loadgen sending`)
	genDone    = regexp.MustCompile(`loadgen report (\{.*\})`)
)

// generator is testdata/loadgen running against one address.
type generator struct{ *proc.Proc }

// startGenerator starts loadgen offering rate calls/s to addr for d, each
// call under timeout, and waits until it sends.
func startGenerator(t *testing.T, addr string, rate float64, d, timeout time.Duration) *generator {
	t.Helper()
	args := []string{"-addr", addr, "-rate", fmtFloat(rate), "-duration", d.String(), "-timeout", timeout.String()}
	g := &generator{proc.StartT(t, loadgenBin, args, nil)}
	if _, err := g.WaitFor(genSending, 15*time.Second); err != nil {
		t.Fatalf("loadgen: %v", err)
	}
	return g
}

// report waits up to d for g's report.
func (g *generator) report(t *testing.T, d time.Duration) genReport {
	t.Helper()
	m, err := g.WaitFor(genDone, d)
	if err != nil {
		t.Fatalf("loadgen: %v", err)
	}
	var r genReport
	if err := json.Unmarshal([]byte(m[1]), &r); err != nil {
		t.Fatalf("loadgen report %s: %v", m[1], err)
	}
	return r
}

func fmtFloat(f float64) string { b, _ := json.Marshal(f); return string(b) }
