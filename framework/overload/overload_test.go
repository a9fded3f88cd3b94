package overload

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// writeTree writes files (path → content) under a new directory, as a
// root for WithCgroupRoot.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCgroupCores(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		cores float64
		ok    bool
		err   string
	}{
		{"v2 quota on the process's cgroup", map[string]string{
			"proc/self/cgroup":                       "0::/kubepods/pod1/c1\n",
			"sys/fs/cgroup/kubepods/pod1/c1/cpu.max": "100000 100000\n",
		}, 1, true, ""},
		{"v2 quota on an ancestor", map[string]string{
			"proc/self/cgroup":                       "0::/kubepods/pod1/c1\n",
			"sys/fs/cgroup/kubepods/pod1/c1/cpu.max": "max 100000\n",
			"sys/fs/cgroup/kubepods/pod1/cpu.max":    "150000 100000\n",
		}, 1.5, true, ""},
		{"v2 without quota", map[string]string{
			"proc/self/cgroup":      "0::/\n",
			"sys/fs/cgroup/cpu.max": "max 100000\n",
		}, 0, false, ""},
		{"v1 cpu,cpuacct", map[string]string{
			"proc/self/cgroup": "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/\n",
			"sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us":  "50000\n",
			"sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
		}, 0.5, true, ""},
		{"v1 without quota", map[string]string{
			"proc/self/cgroup":                    "1:cpu:/\n",
			"sys/fs/cgroup/cpu/cpu.cfs_quota_us":  "-1\n",
			"sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
		}, 0, false, ""},
		{"no cgroups", map[string]string{}, 0, false, ""},
		{"malformed cpu.max", map[string]string{
			"proc/self/cgroup":      "0::/\n",
			"sys/fs/cgroup/cpu.max": "lots 100000\n",
		}, 0, false, "cpu.max"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cores, ok, err := cgroupCores(writeTree(t, tc.files))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil || ok != tc.ok || cores != tc.cores {
				t.Fatalf("cores %v ok %v err %v, want %v %v", cores, ok, err, tc.cores, tc.ok)
			}
		})
	}
	if _, _, err := cgroupCores("/"); err != nil {
		t.Fatalf("this machine's cgroup: %v", err)
	}
}

// oneCore returns a root for WithCgroupRoot under which the process may
// use one core, whatever the machine has.
func oneCore(t *testing.T) string {
	t.Helper()
	return writeTree(t, map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "100000 100000\n"})
}

// clock is a settable time for the limiter.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{t: time.Unix(1_000_000, 0)} }
func (l *Limiter) useClock(c *clock) { l.now = c.now }
func mustNew(t *testing.T, opts ...Option) *Limiter {
	t.Helper()
	l, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// serve completes n calls of latency rt in each of the next buckets.
func serve(l *Limiter, c *clock, buckets, n int, rt time.Duration) {
	for range buckets {
		for range n {
			done, ok := l.Allow("/p.S/M")
			if !ok {
				panic("shed while filling")
			}
			c.add(rt)
			done()
			c.add(-rt)
		}
		c.add(l.bucket)
	}
}

// The limit is Little's law over the window; calls over it are shed only
// while the CPU is busy or within a second of the last shed; Critical and
// the health service never, Sheddable at three quarters.
func TestLimitSheds(t *testing.T) {
	c := newClock()
	l := mustNew(t, WithCgroupRoot(oneCore(t)), WithPriority(func(m string) Priority {
		switch m {
		case "/p.S/Batch":
			return Sheddable
		case "/p.S/Admin":
			return Critical
		}
		return Normal
	}))
	l.useClock(c)
	if got := l.Stats().Limit; got != 0 {
		t.Fatalf("limit before any call %d, want 0 (unknown)", got)
	}
	serve(l, c, 10, 100, 10*time.Millisecond) // 1,000 calls/s of 10 ms: 10 in flight
	if got := l.Stats().Limit; got != 11 {
		t.Fatalf("limit %d, want 11: 10 served and one waiting for the core", got)
	}
	var held []func()
	hold := func(n int) {
		for range n {
			done, ok := l.Allow("/p.S/M")
			if !ok {
				t.Fatalf("shed at %d in flight with the CPU idle", l.Stats().InFlight)
			}
			held = append(held, done)
		}
	}
	hold(20) // CPU idle: the limit does not apply
	for _, d := range held {
		d()
	}
	held = nil

	l.setCPU(0.9)
	hold(8)
	if _, ok := l.Allow("/p.S/Batch"); ok {
		t.Fatal("a sheddable call admitted at 8 in flight of 11")
	}
	hold(3)
	for _, m := range []string{"/p.S/M", "/p.S/Batch"} {
		if _, ok := l.Allow(m); ok {
			t.Fatalf("%s admitted at the limit with the CPU busy", m)
		}
	}
	if l.AllowStream("/p.S/Watch") {
		t.Fatal("a stream opened at the limit with the CPU busy")
	}
	for _, m := range []string{"/p.S/Admin", "/grpc.health.v1.Health/Check", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"} {
		done, ok := l.Allow(m)
		if !ok {
			t.Fatalf("%s shed", m)
		}
		done()
	}
	if got := l.Stats().Shed; got != 4 {
		t.Fatalf("shed %d, want 4", got)
	}

	l.setCPU(0.1) // within a second of the last shed: still shedding
	c.add(500 * time.Millisecond)
	if _, ok := l.Allow("/p.S/M"); ok {
		t.Fatal("admitted over the limit 0.5s after a shed")
	}
	c.add(1100 * time.Millisecond) // the window has moved on too: no limit
	if got := l.Stats().Limit; got != 0 {
		t.Fatalf("limit %d after an empty window, want 0", got)
	}
	hold(1)
	for _, d := range held {
		d()
	}
	if got := l.Stats().InFlight; got != 0 {
		t.Fatalf("in flight %d after every call ended", got)
	}
}

// The CPU share is of what the cgroup allows: one goroutine busy is over
// the threshold under a quarter-core quota, and under it on this machine's
// cores.
func TestCPUShareOfTheCgroupQuota(t *testing.T) {
	quarter := writeTree(t, map[string]string{
		"proc/self/cgroup":      "0::/\n",
		"sys/fs/cgroup/cpu.max": "25000 100000\n",
	})
	for _, tc := range []struct {
		name string
		root string
		busy bool
	}{
		{"quarter core", quarter, true},
		// One goroutine of NumCPU cores: under the threshold, unless the
		// machine has one core.
		{"the machine", t.TempDir(), runtime.NumCPU() == 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := mustNew(t, WithCgroupRoot(tc.root))
			l.cfg.sample = 50 * time.Millisecond
			if tc.root == quarter && l.Stats().Cores != 0.25 {
				t.Fatalf("cores %v, want 0.25", l.Stats().Cores)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var stop atomic.Bool
			wg.Go(func() { _ = l.Run(ctx) })
			wg.Go(func() {
				for x := 0; !stop.Load(); x++ { // one goroutine busy
				}
			})
			defer func() { stop.Store(true); cancel(); wg.Wait() }()
			if tc.busy {
				poll.Until(t, 5*time.Second, "CPU share over 0.8", func() bool { return l.CPU() >= 0.8 })
				return
			}
			deadline := time.Now().Add(600 * time.Millisecond)
			for time.Now().Before(deadline) {
				if u := l.CPU(); u >= 0.8 {
					t.Fatalf("CPU share %v with one goroutine busy of %v cores", u, l.Stats().Cores)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// The cores the process may use are at most GOMAXPROCS: with GOMAXPROCS
// 1 on a larger machine, one core, so that a process held to one core
// reads its one busy core as busy (not half of two).
func TestCoresAtMostGOMAXPROCS(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  float64
	}{
		{"no quota", map[string]string{}, 1},
		{"quota of two cores", map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "200000 100000\n"}, 1},
		{"quota of half a core", map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "50000 100000\n"}, 0.5},
	} {
		if have := mustNew(t, WithCgroupRoot(writeTree(t, tc.files))).Stats().Cores; have != tc.want {
			t.Errorf("%s, GOMAXPROCS 1 of %d CPUs: cores %v, want %v", tc.name, runtime.NumCPU(), have, tc.want)
		}
	}
}

func TestNewRefusesBadSettings(t *testing.T) {
	for _, o := range []Option{WithCPUThreshold(0), WithCPUThreshold(1.5), WithCPUThreshold(math.NaN()), WithWindow(time.Second, 1), WithWindow(time.Millisecond, 10)} {
		if _, err := New(o); err == nil || !strings.HasPrefix(err.Error(), "overload: ") {
			t.Errorf("err %v, want an overload: error", err)
		}
	}
	if _, err := New(WithCgroupRoot(writeTree(t, map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "x y"}))); err == nil {
		t.Error("a malformed cpu.max accepted")
	}
}

// On a real gRPC server: a call over the limit fails at once with
// RESOURCE_EXHAUSTED while the health check still answers; a PanicStream
// opened over the limit is shed before its handler (which would panic).
func TestGRPCShedsOverTheLimitButNotHealth(t *testing.T) {
	c := newClock()
	l := mustNew(t, WithCgroupRoot(t.TempDir()))
	l.useClock(c)
	serve(l, c, 10, 10, 20*time.Millisecond) // 100 calls/s of 20 ms: limit max(2, cores)
	limit := l.Stats().Limit
	l.setCPU(1)
	addr := testsvc.Serve(t, grpc.ChainUnaryInterceptor(l.UnaryServerInterceptor()), grpc.ChainStreamInterceptor(l.StreamServerInterceptor()))
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hold, release := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range limit {
		wg.Go(func() { _ = testsvc.Sleep(hold, cc, time.Minute) })
	}
	poll.Until(t, 10*time.Second, "the limit's calls in flight", func() bool { return l.Stats().InFlight == limit })
	start := time.Now()
	err = testsvc.Sleep(ctx, cc, time.Minute)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("call over the limit: %v, want RESOURCE_EXHAUSTED", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the shed call took %s", d)
	}
	if err := testsvc.PanicStream(ctx, cc); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("stream over the limit: %v, want RESOURCE_EXHAUSTED", err)
	}
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check at the limit: %v %v", resp, err)
	}
	release()
	wg.Wait()
	poll.Until(t, 10*time.Second, "no call in flight", func() bool { return l.Stats().InFlight == 0 })
	if err := testsvc.Sleep(ctx, cc, time.Millisecond); err != nil {
		t.Fatalf("call under the limit: %v", err)
	}
}

// With Tap, a call over the limit is shed when it arrives: no interceptor
// sees it, nor the handler. A call Tap admitted frees its slot when its
// handler returns, a stream when it opens, and a call of a method the
// server does not have (no interceptor runs) when it ends.
func TestTapShedsOnArrival(t *testing.T) {
	c := newClock()
	l := mustNew(t, WithCgroupRoot(oneCore(t)))
	l.useClock(c)
	serve(l, c, 10, 10, 20*time.Millisecond) // 100 calls/s of 20 ms: limit 2+1
	limit := l.Stats().Limit
	l.setCPU(1)
	var reached atomic.Int64
	count := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		reached.Add(1)
		return h(ctx, req)
	}
	recoverStream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		defer func() {
			if recover() != nil {
				err = status.Error(codes.Internal, "panic")
			}
		}()
		return h(srv, ss)
	}
	addr := testsvc.Serve(t, grpc.InTapHandle(l.Tap),
		grpc.ChainUnaryInterceptor(count, l.UnaryServerInterceptor()), grpc.ChainStreamInterceptor(l.StreamServerInterceptor(), recoverStream))
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hold, release := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range limit {
		wg.Go(func() { _ = testsvc.Sleep(hold, cc, time.Minute) })
	}
	poll.Until(t, 10*time.Second, "the limit's calls in flight", func() bool { return l.Stats().InFlight == limit })
	if err := testsvc.Sleep(ctx, cc, time.Minute); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("call over the limit: %v, want RESOURCE_EXHAUSTED", err)
	}
	if have := reached.Load(); have != limit {
		t.Fatalf("%d calls reached the interceptors, want the %d admitted", have, limit)
	}
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check at the limit: %v", err)
	}
	release()
	wg.Wait()
	poll.Until(t, 10*time.Second, "no call in flight", func() bool { return l.Stats().InFlight == 0 })
	l.setCPU(0)
	if err := testsvc.PanicStream(ctx, cc); status.Code(err) != codes.Internal {
		t.Fatalf("stream: %v, want its handler's panic", err)
	}
	if err := cc.Invoke(ctx, "/p.S/Nope", new(healthpb.HealthCheckRequest), new(healthpb.HealthCheckResponse)); status.Code(err) != codes.Unimplemented {
		t.Fatalf("unknown method: %v, want UNIMPLEMENTED", err)
	}
	poll.Until(t, 10*time.Second, "the stream's and the unknown method's slots free", func() bool { return l.Stats().InFlight == 0 })
}

// Found in review: a queue signal (calls that waited for their handlers
// longer than the window's shortest call) shed an I/O-bound instance with
// its CPU at 0.15, 23,240 calls of 25,945, where a fifth of its calls
// return at once and make the limit small (here, before the fix: 2,514 of
// 3,332 at 0.32). An instance sheds only with its CPU busy.
func TestIOBoundInstanceDoesNotShed(t *testing.T) {
	l := mustNew(t)
	ctx, cancel := context.WithCancel(context.Background())
	var run sync.WaitGroup
	run.Go(func() { _ = l.Run(ctx) })
	defer run.Wait()
	defer cancel()
	addr := testsvc.Serve(t, grpc.InTapHandle(l.Tap),
		grpc.ChainUnaryInterceptor(l.UnaryServerInterceptor()), grpc.ChainStreamInterceptor(l.StreamServerInterceptor()))
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var served, shed atomic.Int64
	var busiest atomic.Uint64 // the CPU's share seen, in thousandths
	end := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; i < 2000 && time.Now().Before(end); i++ {
				d := 10 * time.Millisecond
				if (i+w)%5 == 0 {
					d = 0 // a cache hit
				}
				switch err := testsvc.Sleep(ctx, cc, d); status.Code(err) {
				case codes.OK:
					served.Add(1)
				case codes.ResourceExhausted:
					shed.Add(1)
					time.Sleep(d) // the load's pace: a shed call does not spin the caller
				default:
					t.Errorf("call: %v", err)
					return
				}
				if c := uint64(l.CPU() * 1000); c > busiest.Load() {
					busiest.Store(c)
				}
			}
		})
	}
	wg.Wait()
	cpu := float64(busiest.Load()) / 1000
	t.Logf("served %d, shed %d; limit %d, CPU's share at most %.2f", served.Load(), shed.Load(), l.Stats().Limit, cpu)
	if shed.Load() > 0 && cpu < 0.8 {
		t.Errorf("an I/O-bound instance shed %d of %d calls with its CPU's share at most %.2f, under the threshold 0.8", shed.Load(), served.Load()+shed.Load(), cpu)
	}
}

// Found in review: a call Tap admitted freed its slot when its context
// ended, while its handler, which did not watch it, ran on: 49 handlers
// running, 0 in flight.
func TestTapSlotIsHeldWhileTheHandlerRuns(t *testing.T) {
	l := mustNew(t)
	hold := make(chan struct{})
	var running sync.WaitGroup
	addr := testsvc.Serve(t, grpc.InTapHandle(l.Tap), grpc.ChainUnaryInterceptor(l.UnaryServerInterceptor(),
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			defer running.Done()
			<-hold // a handler that does not watch its context
			return h(ctx, req)
		}))
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	const calls = 5
	running.Add(calls)
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			_ = testsvc.Sleep(ctx, cc, 0)
		})
	}
	wg.Wait() // every caller's deadline has passed
	if n := l.Stats().InFlight; n != calls {
		t.Errorf("%d calls in flight with %d handlers running past their deadlines; want %d", n, calls, calls)
	}
	close(hold)
	running.Wait()
	poll.Until(t, 5*time.Second, "the slots freed", func() bool { return l.Stats().InFlight == 0 })
}

// Found in review: health checks answered in microseconds made the limit,
// and sheds with the CPU calm prolonged the shedding for good.
func TestLimitIgnoresCriticalCallsAndCalmsDown(t *testing.T) {
	c := newClock()
	l := mustNew(t, WithCgroupRoot(oneCore(t)))
	l.useClock(c)
	serve(l, c, 10, 100, 10*time.Millisecond) // limit 11
	for range 5 {
		done, ok := l.Allow("/grpc.health.v1.Health/Check")
		if !ok {
			t.Fatal("health check shed")
		}
		c.add(30 * time.Microsecond)
		done()
	}
	serve(l, c, 1, 100, 10*time.Millisecond) // the bucket of the checks completes
	if got := l.Stats().Limit; got < 10 || got > 12 {
		t.Fatalf("limit %d after health checks, want about 11", got)
	}

	l.setCPU(0.9)
	var held []func()
	for range l.Stats().Limit {
		done, ok := l.Allow("/p.S/M")
		if !ok {
			t.Fatal("shed under the limit")
		}
		held = append(held, done)
	}
	if _, ok := l.Allow("/p.S/M"); ok {
		t.Fatal("admitted over the limit with the CPU busy")
	}
	l.setCPU(0.05)
	for i := range 30 { // 3 s of calls still over the limit, the CPU calm
		c.add(100 * time.Millisecond)
		for range 100 { // the window stays fed: the limit stays
			l.record(c.now(), 10*time.Millisecond)
		}
		done, ok := l.Allow("/p.S/M")
		if ok {
			done()
			if i < 9 {
				t.Fatalf("admitted over the limit %d ms after a shed with the CPU busy", (i+1)*100)
			}
			break
		}
		if i >= 11 {
			t.Fatalf("still shedding %d ms after the CPU calmed down", (i+1)*100)
		}
	}
	for _, d := range held {
		d()
	}
}

// A stream opens while fewer calls than the limit are in flight, as a
// unary call does: under a one-core quota (limit 2) an idle instance
// still opens streams.
func TestStreamAdmittedUnderTheLimit(t *testing.T) {
	c := newClock()
	l := mustNew(t, WithCgroupRoot(oneCore(t)))
	l.useClock(c)
	serve(l, c, 10, 1, 50*time.Millisecond) // 10 calls/s of 50 ms: limit 1+1
	l.setCPU(0.9)
	if got := l.Stats().Limit; got != 2 {
		t.Fatalf("limit %d, want 2", got)
	}
	if !l.AllowStream("/p.S/Upload") {
		t.Fatal("a stream shed with no call in flight")
	}
	if !l.AllowStream("/xds.service.orca.v3.OpenRcaService/StreamCoreMetrics") {
		t.Fatal("ORCA's stream shed")
	}
}

// Calls that queue inside the measured section (a pool, the run queue)
// take longer the more are admitted; the limit must follow what the
// instance serves, not the calls admitted. Found in review: a limit from
// the buckets' mean latencies grew with the load until nothing was shed.
func TestLimitFollowsTheCapacityNotTheQueue(t *testing.T) {
	c := newClock()
	l := mustNew(t, WithCgroupRoot(oneCore(t)))
	l.useClock(c)
	// 200 calls/s served, two at a time, 10 ms each; 16 admitted: one
	// call a bucket gets through at once, the others queue for 70 ms.
	for range 30 {
		l.record(c.now(), 10*time.Millisecond)
		for range 19 {
			l.record(c.now(), 80*time.Millisecond)
		}
		c.add(l.bucket)
	}
	if got := l.Stats().Limit; got != 3 {
		t.Fatalf("limit %d, want 3: 200 calls/s of 10 ms, and one waiting for the core", got)
	}
	// A quiet bucket with one fast call does not make the limit.
	serve(l, c, 9, 100, 50*time.Millisecond)
	l.record(c.now(), 20*time.Microsecond)
	c.add(l.bucket)
	if got := l.Stats().Limit; got != 51 {
		t.Fatalf("limit %d, want 51: 1,000 calls/s of 50 ms, and one of 20 µs alone in a bucket", got)
	}
	// A Critical call in flight is not counted.
	done, _ := l.Allow("/grpc.health.v1.Health/Check")
	if got := l.Stats().InFlight; got != 0 {
		t.Fatalf("in flight %d with a health check in flight, want 0", got)
	}
	done()
}
