package lb_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	estats "google.golang.org/grpc/experimental/stats"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/internal/testsvc"
)

// flaky is a real gRPC server on 127.0.0.1 that fails every other call
// (or every call) with a code while set, and counts the calls it gets.
type flaky struct {
	addr  string
	calls atomic.Int64
	code  atomic.Uint32 // codes.OK: healthy
	every atomic.Int64  // fail one call in every
}

func (f *flaky) fail(c codes.Code, every int64) { f.every.Store(every); f.code.Store(uint32(c)) }

func startFlaky(t *testing.T, n int) []*flaky {
	t.Helper()
	out := make([]*flaky, n)
	for i := range out {
		f := &flaky{}
		f.addr = testsvc.Serve(t, grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			k := f.calls.Add(1)
			if c := codes.Code(f.code.Load()); c != codes.OK && k%f.every.Load() == 0 {
				return nil, status.Error(c, "flaky")
			}
			return h(ctx, req)
		}))
		out[i] = f
	}
	return out
}

// recorder is a stats handler that records the lb metrics a channel gives
// it: the ejections counted, and each change of the ejected gauge.
type recorder struct {
	estats.UnimplementedMetricsRecorder
	mu        sync.Mutex
	ejections map[string]int64 // by method
	ejected   []gaugeAt        // every change
	sweeps    int              // gauge records: one a sweep
}

type gaugeAt struct {
	at time.Time
	n  int64
}

func (r *recorder) RecordInt64Count(h *estats.Int64CountHandle, incr int64, labels ...string) {
	if h.Descriptor().Name != "svckit.lb.ejections" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ejections == nil {
		r.ejections = map[string]int64{}
	}
	r.ejections[labels[2]] += incr
}

func (r *recorder) RecordInt64Gauge(h *estats.Int64GaugeHandle, v int64, _ ...string) {
	if h.Descriptor().Name != "svckit.lb.ejected" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweeps++
	if n := len(r.ejected); n == 0 || r.ejected[n-1].n != v {
		r.ejected = append(r.ejected, gaugeAt{time.Now(), v})
	}
}

func (r *recorder) gauge() (int64, []gaugeAt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ejected) == 0 {
		return 0, nil
	}
	return r.ejected[len(r.ejected)-1].n, append([]gaugeAt(nil), r.ejected...)
}

func (r *recorder) swept() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sweeps
}

func (r *recorder) total() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, v := range r.ejections {
		n += v
	}
	return n
}

func (*recorder) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (*recorder) HandleRPC(context.Context, stats.RPCStats)                         {}
func (*recorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (*recorder) HandleConn(context.Context, stats.ConnStats)                       {}

// fast is an outlier config for tests: failure-percentage ejection over
// 100 ms intervals, of endpoints with 25 % of 4 or more calls failed.
const fast = `{"interval":"0.1s","baseEjectionTime":"%s","maxEjectionPercent":%d,
	"failurePercentageEjection":{"threshold":25,"enforcementPercentage":100,"minimumHosts":3,"requestVolume":4}}`

// dialOutlier connects to srvs with policy and outlier config od.
func dialOutlier(t *testing.T, policy, od string, srvs []*flaky) (*grpc.ClientConn, *recorder) {
	t.Helper()
	cc, rec, _ := dialOutlierConfig(t, fmt.Sprintf(`{"loadBalancingConfig":[{%q:{"outlierDetection":%s}}]}`, policy, od), srvs)
	return cc, rec
}

// dialOutlierConfig connects to srvs with service config sc, through the
// returned resolver.
func dialOutlierConfig(t *testing.T, sc string, srvs []*flaky) (*grpc.ClientConn, *recorder, *manual.Resolver) {
	t.Helper()
	var eps []resolver.Endpoint
	for _, s := range srvs {
		eps = append(eps, endpoint(s.addr, 1))
	}
	r := manual.NewBuilderWithScheme("lbtest")
	r.InitialState(resolver.State{Endpoints: eps})
	rec := &recorder{}
	cc, err := grpc.NewClient(r.Scheme()+":///svc",
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(rec),
		grpc.WithDefaultServiceConfig(sc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	cc.Connect()
	return cc, rec, r
}

// load calls cc from 4 goroutines until stop is closed; a hash key per
// call spreads svckit_consistent_hash's calls. It returns the failed
// calls and the calls made.
func load(cc *grpc.ClientConn, stop <-chan struct{}) func() (failed, made int64) {
	var f, m atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(lb.WithHashKey(context.Background(), fmt.Sprint(w, "-", i)), 5*time.Second)
				_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
				cancel()
				m.Add(1)
				if err != nil {
					f.Add(1)
				}
			}
		})
	}
	return func() (int64, int64) { wg.Wait(); return f.Load(), m.Load() }
}

// eventually polls cond until it holds or d passes, and returns how long
// it took.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// ejectFirst makes srvs[0] fail every other call, puts load on cc until
// stop is closed (the caller closes it; ejectFirst waits for the load then
// through t.Cleanup), and returns how long until rec saw it ejected and
// how many calls reached it while the others got 300.
func ejectFirst(t *testing.T, cc *grpc.ClientConn, rec *recorder, srvs []*flaky, stop chan struct{}) (time.Duration, int64) {
	t.Helper()
	bad := srvs[0]
	bad.fail(codes.Unavailable, 2)
	wait := load(cc, stop)
	t.Cleanup(func() { wait() })
	took := eventually(t, 10*time.Second, "ejection", func() bool { n, _ := rec.gauge(); return n == 1 })
	before := bad.calls.Load()
	var healthy int64
	for _, s := range srvs[1:] {
		healthy -= s.calls.Load()
	}
	eventually(t, 10*time.Second, "calls to the others", func() bool {
		n := healthy
		for _, s := range srvs[1:] {
			n += s.calls.Load()
		}
		return n >= 300
	})
	return took, bad.calls.Load() - before
}

func TestOutlierEjectsAFailingEndpoint(t *testing.T) {
	for _, policy := range []string{lb.P2CEWMA, lb.WeightedRoundRobin, lb.Random, lb.ConsistentHash} {
		t.Run(policy, func(t *testing.T) {
			srvs := startFlaky(t, 4)
			cc, rec := dialOutlier(t, policy, fmt.Sprintf(fast, "2s", 10), srvs)
			stop := make(chan struct{})
			took, have := ejectFirst(t, cc, rec, srvs, stop)
			defer close(stop)
			if n, _ := rec.gauge(); n != 1 {
				t.Fatalf("the ejection ended during the check (gauge %d); make baseEjectionTime longer", n)
			}
			t.Logf("%s: ejected %s after the failures began; it got %d calls while the others got 300", policy, took.Round(time.Millisecond), have)
			// The 4 callers' calls picked before the ejection may reach
			// it after; no later one does.
			if have > 4 {
				t.Errorf("ejected endpoint got %d calls, want ≤ 4 (those in flight)", have)
			}
		})
	}
}

func TestOutlierEjectionEndsAndGrows(t *testing.T) {
	srvs := startFlaky(t, 4)
	const base = 300 * time.Millisecond
	cc, rec := dialOutlier(t, lb.Random, fmt.Sprintf(fast, fmt.Sprint(base.Seconds(), "s"), 10), srvs)
	bad := srvs[0]
	bad.fail(codes.Internal, 2)
	stop := make(chan struct{})
	wait := load(cc, stop)
	// Three ejections in a row: the n-th lasts n × base (plus up to an
	// interval, as sweeps let endpoints back in).
	eventually(t, 20*time.Second, "three ejections", func() bool {
		_, g := rec.gauge()
		return len(g) >= 6 && g[5].n == 0
	})
	bad.fail(codes.OK, 1)
	// Healthy again, it is let back in after its third ejection and stays.
	back := bad.calls.Load()
	eventually(t, 10*time.Second, "calls to the healed endpoint", func() bool { return bad.calls.Load() > back+20 })
	close(stop)
	failed, made := wait()
	_, g := rec.gauge()
	for i := 0; i+1 < 6; i += 2 {
		if g[i].n != 1 || g[i+1].n != 0 {
			t.Fatalf("gauge changes %v: want 1, 0 in turn", g)
		}
		n := i/2 + 1
		have, want := g[i+1].at.Sub(g[i].at), time.Duration(n)*base
		t.Logf("ejection %d lasted %s (base × %d = %s)", n, have.Round(time.Millisecond), n, want)
		if have < want-20*time.Millisecond || have > want+250*time.Millisecond {
			t.Errorf("ejection %d lasted %s, want %s to %s more", n, have, want, 250*time.Millisecond)
		}
	}
	if have := rec.total(); have < 3 {
		t.Errorf("ejections counted %d, want ≥ 3", have)
	}
	t.Logf("%d of %d calls failed", failed, made)
}

func TestOutlierMaxEjectionPercent(t *testing.T) {
	for _, tc := range []struct {
		percent, most int64
	}{{50, 2}, {10, 1}, {100, 4}} {
		t.Run(fmt.Sprint(tc.percent), func(t *testing.T) {
			srvs := startFlaky(t, 4)
			cc, rec := dialOutlier(t, lb.Random, fmt.Sprintf(fast, "10s", tc.percent), srvs)
			for _, s := range srvs {
				s.fail(codes.Unavailable, 2)
			}
			stop := make(chan struct{})
			wait := load(cc, stop)
			eventually(t, 10*time.Second, "ejections", func() bool { n, _ := rec.gauge(); return n == tc.most })
			// Some intervals more, to see that no more are ejected, and
			// that calls still reach the servers when all are.
			var sum int64
			for _, s := range srvs {
				sum -= s.calls.Load()
			}
			eventually(t, 10*time.Second, "calls", func() bool {
				n := sum
				for _, s := range srvs {
					n += s.calls.Load()
				}
				return n >= 500
			})
			close(stop)
			failed, made := wait()
			_, g := rec.gauge()
			for _, c := range g {
				if c.n > tc.most {
					t.Errorf("%d ejected at once, want ≤ %d", c.n, tc.most)
				}
			}
			t.Logf("maxEjectionPercent %d: at most %d of 4 ejected; %d of %d calls failed", tc.percent, tc.most, failed, made)
		})
	}
}

func TestOutlierIgnoresCallersErrorsAndShedding(t *testing.T) {
	for _, c := range []codes.Code{codes.ResourceExhausted, codes.NotFound, codes.InvalidArgument, codes.DeadlineExceeded} {
		t.Run(c.String(), func(t *testing.T) {
			srvs := startFlaky(t, 4)
			cc, rec := dialOutlier(t, lb.Random, fmt.Sprintf(fast, "10s", 10), srvs)
			srvs[0].fail(c, 1)
			stop := make(chan struct{})
			wait := load(cc, stop)
			// Twenty intervals of calls, every one to srvs[0] failing.
			start := srvs[0].calls.Load()
			eventually(t, 10*time.Second, "calls", func() bool { return srvs[0].calls.Load() >= start+200 })
			swept := rec.swept()
			eventually(t, 10*time.Second, "two more sweeps", func() bool { return rec.swept() >= swept+2 })
			close(stop)
			wait()
			if have := rec.total(); have != 0 {
				t.Errorf("%s: %d ejections, want 0", c, have)
			}
		})
	}
}

// A config without outlier detection lets every ejected endpoint back in
// at once; one with it again ejects again; and with subsetSize the
// ejection happens inside the subset.
func TestOutlierTurnedOffAndOnAgain(t *testing.T) {
	srvs := startFlaky(t, 5)
	on := fmt.Sprintf(`{"loadBalancingConfig":[{"svckit_random":{"subsetSize":4,"subsetKey":"k","outlierDetection":%s}}]}`, fmt.Sprintf(fast, "10s", 100))
	cc, rec, r := dialOutlierConfig(t, on, srvs)
	for _, s := range srvs {
		s.fail(codes.Unavailable, 2)
	}
	stop := make(chan struct{})
	wait := load(cc, stop)
	defer func() { close(stop); wait() }()
	// Every server fails: the 4 of the subset are ejected, and the fifth
	// never called.
	eventually(t, 10*time.Second, "4 ejected", func() bool { n, _ := rec.gauge(); return n == 4 })
	var outside *flaky
	for _, s := range srvs {
		if s.calls.Load() == 0 {
			outside = s
		}
	}
	if outside == nil {
		t.Fatal("every server called; want one outside the subset of 4")
	}
	var eps []resolver.Endpoint
	for _, s := range srvs {
		eps = append(eps, endpoint(s.addr, 1))
	}
	update := func(sc string) {
		r.UpdateState(resolver.State{Endpoints: eps, ServiceConfig: r.CC().ParseServiceConfig(sc)})
	}
	update(`{"loadBalancingConfig":[{"svckit_random":{"subsetSize":4,"subsetKey":"k"}}]}`)
	took := eventually(t, 5*time.Second, "none ejected", func() bool { n, _ := rec.gauge(); return n == 0 })
	update(on)
	eventually(t, 10*time.Second, "ejected again", func() bool { n, _ := rec.gauge(); return n == 4 })
	t.Logf("let back in %s after the config without outlier detection", took.Round(time.Millisecond))
	if n := outside.calls.Load(); n != 0 {
		t.Errorf("the server outside the subset got %d calls, want 0", n)
	}
}

// svckit_outlier_detection around grpc-go's round_robin ejects as
// svckit's own policies do: the child's picks of the ejected SubConn are
// picked again.
func TestOutlierDetectionPolicyAroundRoundRobin(t *testing.T) {
	// svckit_p2c_ewma as the child (the chaos suite wraps its policies):
	// the chaos suite's TestHalfFailingInstance found its picks of the
	// ejected endpoint told as done, a success in no time, so that p2c
	// took the endpoint for the fastest and picked it past the re-picks
	// (64 attempts in 20 s, never a gap of 3 s; 8 once told as failed).
	// This short case passes either way: it shows the child works.
	for _, child := range []string{"round_robin", lb.P2CEWMA} {
		t.Run(child, func(t *testing.T) { outlierAround(t, child) })
	}
}

func outlierAround(t *testing.T, child string) {
	srvs := startFlaky(t, 4)
	od := fmt.Sprintf(fast, "2s", 10)
	sc := fmt.Sprintf(`{"loadBalancingConfig":[{%q:%s}]}`, lb.OutlierDetectionPolicy, od[:len(od)-1]+`,"childPolicy":[{"no_such_policy":{}},{"`+child+`":{}}]}`)
	cc, rec, _ := dialOutlierConfig(t, sc, srvs)
	stop := make(chan struct{})
	took, have := ejectFirst(t, cc, rec, srvs, stop)
	defer close(stop)
	t.Logf("%s: ejected %s after the failures began; it got %d calls while the others got 300", child, took.Round(time.Millisecond), have)
	if have > 4 {
		t.Errorf("ejected endpoint got %d calls, want ≤ 4 (those in flight)", have)
	}
}

func TestOutlierDetectionPolicyConfig(t *testing.T) {
	p := balancer.Get(lb.OutlierDetectionPolicy).(balancer.ConfigParser)
	for _, tc := range []struct{ js, err string }{
		{`{"childPolicy":[{"round_robin":{}}]}`, ""},
		{`{"interval":"1s","failurePercentageEjection":{},"childPolicy":[{"x":{}},{"pick_first":{"shuffleAddressList":true}}]}`, ""},
		{`{}`, "childPolicy: no registered policy"},
		{`{"childPolicy":[{"x":{}}]}`, "childPolicy: no registered policy"},
		{`{"childPolicy":[{"svckit_random":{"subsetSize":-1}}]}`, "childPolicy svckit_random: lb: svckit_random subsetSize -1"},
		{`{"maxEjectionPercent":200,"childPolicy":[{"round_robin":{}}]}`, "maxEjectionPercent 200"},
		{`{"interval":5,"childPolicy":[{"round_robin":{}}]}`, "want a string"},
	} {
		_, err := p.ParseConfig([]byte(tc.js))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.js, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: have %v, want an error with %q", tc.js, err, tc.err)
		}
	}
}
