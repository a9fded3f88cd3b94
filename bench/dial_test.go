package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/internal/testsvc"
)

// ---------------------------------------------------------------------------
// Setup helpers.

// benchRun bounds the measured part of one benchmark call.
const benchRun = 10 * time.Minute

var serviceSeq atomic.Int64

// uniqueService returns a service name not used before in this process, so
// that an App of an earlier call of the same benchmark cannot be resolved.
func uniqueService(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, serviceSeq.Add(1))
}

// newTracerProvider returns an SDK tracer provider that samples every span
// and exports, in batches, to an exporter that drops them; it is shut down
// when b ends.
func newTracerProvider(b *testing.B) *sdktrace.TracerProvider {
	b.Helper()
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(sdktrace.NewBatchSpanProcessor(tracetest.NewNoopExporter())),
	)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			b.Errorf("tracer provider shutdown: %v", err)
		}
	})
	return tp
}

// startSleepServer starts a plain gRPC server with the test service on
// 127.0.0.1 and returns its address; it is stopped when b ends.
func startSleepServer(b *testing.B, opts ...grpc.ServerOption) string {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatalf("listen: %v", err)
	}
	s := grpc.NewServer(opts...)
	testsvc.Register(s)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	b.Cleanup(func() { s.Stop(); <-done })
	return lis.Addr().String()
}

// startSleepApp runs a framework.App for service with the test service
// registered, against etcd through cli, and waits until it has started. It
// is stopped when b ends.
func startSleepApp(b *testing.B, cli *clientv3.Client, service string, extra ...framework.Option) *framework.App {
	b.Helper()
	opts := appOptions(appConfig(cli.Endpoints()),
		append([]framework.Option{framework.WithEtcd(cli), framework.WithPropagationDelay(0)}, extra...)...)
	a := newBenchApp(b, service, opts)
	testsvc.Register(a.app.GRPC())
	a.start()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	timedOut := false
	select {
	case <-a.app.Started():
	case <-a.done:
	case <-timeout.C:
		timedOut = true
	}
	a.checkStarted(b, 0, timedOut)
	return a.app
}

// dialService returns a client.Client's connection to service with
// policy, the test service marked idempotent, and extra options; it is
// closed when b ends (before the Apps it reaches stop).
func dialService(b *testing.B, cli *clientv3.Client, service, policy string, extra ...client.Option) *grpc.ClientConn {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.NewFromEtcd(cli, append([]client.Option{
		client.WithBalancer(policy),
		client.WithIdempotent(testsvc.ServiceName),
		client.WithLogger(quiet),
		client.WithTimeout(waitTimeout),
	}, extra...)...)
	if err != nil {
		b.Fatal(err)
	}
	cc, err := c.Dial(ctx, service)
	if err != nil {
		b.Fatalf("dial %s: %v", service, err)
	}
	b.Cleanup(func() { _ = cc.Close() })
	return cc
}

// warmUp makes calls that wait for a ready connection until one succeeds.
func warmUp(b *testing.B, cc grpc.ClientConnInterface) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, rpcTimeout)
		err := testsvc.Sleep(cctx, cc, 0, grpc.WaitForReady(true))
		ccancel()
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			b.Fatalf("no successful warm-up call within %s: %v", waitTimeout, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// latencies collects call durations per goroutine without sharing, then
// merges them.
type latencies struct {
	slots [][]time.Duration
	next  atomic.Int64
	mu    sync.Mutex
	extra [][]time.Duration // from goroutines beyond the preallocated slots
}

// newLatencies preallocates room for n durations over g goroutines, so that
// the measured loop does not grow slices in the common case.
func newLatencies(g, n int) *latencies {
	l := &latencies{slots: make([][]time.Duration, g)}
	per := 2*n/g + 64
	for i := range l.slots {
		l.slots[i] = make([]time.Duration, 0, per)
	}
	return l
}

// slot returns an empty slice for one goroutine and the function that hands
// it back filled.
func (l *latencies) slot() ([]time.Duration, func([]time.Duration)) {
	i := int(l.next.Add(1)) - 1
	if i < len(l.slots) {
		return l.slots[i][:0], func(d []time.Duration) { l.slots[i] = d }
	}
	return nil, func(d []time.Duration) {
		l.mu.Lock()
		l.extra = append(l.extra, d)
		l.mu.Unlock()
	}
}

// all returns every duration, sorted.
func (l *latencies) all() []time.Duration {
	var out []time.Duration
	for _, s := range l.slots {
		out = append(out, s...)
	}
	for _, s := range l.extra {
		out = append(out, s...)
	}
	slices.Sort(out)
	return out
}

// quantile returns the q-quantile (nearest rank) of sorted ds.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// ---------------------------------------------------------------------------
// BenchmarkUnary

// BenchmarkUnary measures unary RPC throughput and latency over loopback:
// a plain gRPC server and client against a framework.App and a
// client.Client, both balanced by round_robin, with tracing off and on,
// and the App's load shedding on (its default) and off; %-shed counts the
// attempts the App shed, per 100 calls.
func BenchmarkUnary(b *testing.B) {
	modes := []struct {
		name  string
		trace bool
	}{{"trace=off", false}, {"trace=on", true}}
	b.Run("bare", func(b *testing.B) {
		for _, m := range modes {
			b.Run(m.name, func(b *testing.B) {
				var sopts []grpc.ServerOption
				copts := []grpc.DialOption{
					grpc.WithTransportCredentials(insecure.NewCredentials()),
					grpc.WithDefaultServiceConfig(roundRobin),
				}
				if m.trace {
					tp := newTracerProvider(b)
					sopts = append(sopts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp))))
					copts = append(copts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp))))
				}
				addr := startSleepServer(b, sopts...)
				cc, err := grpc.NewClient("passthrough:///"+addr, copts...)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = cc.Close() })
				benchUnary(b, cc)
			})
		}
	})
	// svckit's Apps shed load by default (package overload); the
	// ",overload=off" cases run them without, to show what it costs.
	b.Run("svckit", func(b *testing.B) {
		cli := startEtcd(b)
		for _, m := range modes {
			for _, shed := range []bool{true, false} {
				name := m.name
				if !shed {
					name += ",overload=off"
				}
				b.Run(name, func(b *testing.B) {
					var sheds shedCounter
					aopts := []framework.Option{}
					dopts := []client.Option{client.WithGRPCOption(grpc.WithStatsHandler(&sheds))}
					if !shed {
						aopts = append(aopts, withoutOverload(cli))
					}
					if m.trace {
						tp := newTracerProvider(b)
						aopts = append(aopts, framework.WithTracerProvider(tp))
						dopts = append(dopts, client.WithTracerProvider(tp))
					}
					service := uniqueService("unary")
					startSleepApp(b, cli, service, aopts...)
					cc := dialService(b, cli, service, roundrobin.Name, dopts...)
					benchUnary(b, cc)
					sheds.report(b)
				})
			}
		}
	})
}

// withoutOverload is the configuration of a bench App that sheds no load.
func withoutOverload(cli *clientv3.Client) framework.Option {
	cfg := appConfig(cli.Endpoints())
	cfg.OverloadCPU = 0
	return framework.WithConfig(cfg)
}

// shedCounter is a client stats handler that counts the attempts an App
// shed (RESOURCE_EXHAUSTED), which the client then retried.
type shedCounter struct{ n atomic.Int64 }

func (c *shedCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *shedCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if end, ok := s.(*stats.End); ok && status.Code(end.Error) == codes.ResourceExhausted {
		c.n.Add(1)
	}
}
func (c *shedCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (c *shedCounter) HandleConn(context.Context, stats.ConnStats) {}

// report reports the attempts shed per 100 calls of b.
func (c *shedCounter) report(b *testing.B) {
	b.ReportMetric(100*float64(c.n.Load())/float64(b.N), "%-shed")
}

// benchUnary makes b.N Sleep(0) calls on cc from 8×GOMAXPROCS goroutines and
// reports calls per second and the median and 99th percentile latency.
func benchUnary(b *testing.B, cc grpc.ClientConnInterface) {
	b.Helper()
	warmUp(b, cc)
	ctx, cancel := context.WithTimeout(context.Background(), benchRun)
	defer cancel()
	const parallelism = 8
	lat := newLatencies(parallelism*runtime.GOMAXPROCS(0), b.N)
	var failed atomic.Int64
	var firstErr atomic.Pointer[error]
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mine, done := lat.slot()
		for pb.Next() {
			start := time.Now()
			err := testsvc.Sleep(ctx, cc, 0)
			mine = append(mine, time.Since(start))
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, &err)
			}
		}
		done(mine)
	})
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d calls failed; first: %v", n, b.N, *firstErr.Load())
	}
	ds := lat.all()
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rps")
	b.ReportMetric(us(quantile(ds, 0.5)), "us-p50")
	b.ReportMetric(us(quantile(ds, 0.99)), "us-p99")
}

// ---------------------------------------------------------------------------
// BenchmarkTail

const (
	// tailCallers is the number of concurrent callers of BenchmarkTail.
	tailCallers = 32
	// tailLag is the latency the slow instance adds to every call.
	tailLag = 20 * time.Millisecond
)

// BenchmarkTail runs three framework.Apps of one service, one of them bad,
// and 32 concurrent callers through client.Client.Dial with each policy. In
// slow, the bad instance adds 20ms to every call; in failing, it fails
// every call at once with UNAVAILABLE (the calls are idempotent, so they are
// retried). The Apps shed load as by default, or not in the
// ",overload=off" cases. Reports the share of attempts the bad instance
// received, the client error rate, the attempts shed per 100 calls, and
// the median and 99th percentile latency of calls.
func BenchmarkTail(b *testing.B) {
	cli := startEtcd(b)
	for _, policy := range []string{lb.P2CEWMA, roundrobin.Name} {
		b.Run(policy, func(b *testing.B) {
			b.Run("slow", func(b *testing.B) { benchTail(b, cli, policy, false, true) })
			b.Run("failing", func(b *testing.B) { benchTail(b, cli, policy, true, true) })
			b.Run("slow,overload=off", func(b *testing.B) { benchTail(b, cli, policy, false, false) })
			b.Run("failing,overload=off", func(b *testing.B) { benchTail(b, cli, policy, true, false) })
		})
	}
}

// benchTail runs one BenchmarkTail case: three Apps of a new service, the
// first of them bad (slow, or failing if failing), shedding load if shed,
// and tailCallers callers through a conn with policy.
func benchTail(b *testing.B, cli *clientv3.Client, policy string, failing, shed bool) {
	b.Helper()
	service := uniqueService("tail")
	// hits counts the attempts each instance received.
	var hits [3]atomic.Int64
	for i := range hits {
		opts := []framework.Option{framework.WithUnaryInterceptor(tailInterceptor(&hits[i], i == 0, failing))}
		if !shed {
			opts = append(opts, withoutOverload(cli))
		}
		startSleepApp(b, cli, service, opts...)
	}
	var sheds shedCounter
	cc := dialService(b, cli, service, policy, client.WithGRPCOption(grpc.WithStatsHandler(&sheds)))

	// Warm up with the same 32 callers until every instance has had an
	// attempt, so that all three are connected and known to the policy;
	// failures of the failing instance are expected here. (A single
	// sequential caller is not enough for svckit_p2c_ewma: see doc.go.)
	warmTail(b, cc, func() bool { return hits[0].Load() > 0 && hits[1].Load() > 0 && hits[2].Load() > 0 },
		func() string {
			return fmt.Sprintf("attempts %d, %d, %d", hits[0].Load(), hits[1].Load(), hits[2].Load())
		})
	for i := range hits {
		hits[i].Store(0)
	}

	r := runTail(b, cc)
	if !failing && r.errs > 0 {
		b.Fatalf("%d of %d calls failed; first: %v", r.errs, b.N, r.firstErr)
	}
	if e := r.firstErr; e != nil && !errors.Is(e, context.DeadlineExceeded) && status.Code(e) != codes.Unavailable {
		b.Fatalf("unexpected error: %v", e)
	}
	reportTail(b, &hits, r, failing)
	sheds.report(b)
}

// tailInterceptor counts each attempt in hit and, if bad, fails it at once
// with UNAVAILABLE (failing) or delays it by tailLag.
func tailInterceptor(hit *atomic.Int64, bad, failing bool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		hit.Add(1)
		if bad {
			if failing {
				return nil, status.Error(codes.Unavailable, "bench: failing instance")
			}
			t := time.NewTimer(tailLag)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return nil, status.FromContextError(ctx.Err()).Err()
			}
		}
		return h(ctx, req)
	}
}

// tailResult is what the timed calls of one BenchmarkTail case saw.
type tailResult struct {
	lat      []time.Duration // of every call
	errs     int64           // calls that failed
	firstErr error           // the first of them, or nil
}

// runTail makes b.N calls on cc from tailCallers goroutines, timed, and
// fails b if they are not done within benchRun.
func runTail(b *testing.B, cc grpc.ClientConnInterface) tailResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchRun)
	defer cancel()
	lat := newLatencies(tailCallers, b.N)
	var next, errs atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ResetTimer()
	for range tailCallers {
		mine, done := lat.slot()
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				start := time.Now()
				err := testsvc.Sleep(ctx, cc, 0)
				mine = append(mine, time.Since(start))
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
			}
			done(mine)
		})
	}
	wg.Wait()
	b.StopTimer()
	if ctx.Err() != nil {
		b.Fatalf("calls not done within %s", benchRun)
	}
	r := tailResult{lat: lat.all(), errs: errs.Load()}
	if e := firstErr.Load(); e != nil {
		r.firstErr = *e
	}
	return r
}

// reportTail reports the share of attempts the bad instance (hits[0])
// received, for failing the error rate and attempts per call, and the
// rate and latency quantiles of r.
func reportTail(b *testing.B, hits *[3]atomic.Int64, r tailResult, failing bool) {
	attempts := hits[0].Load() + hits[1].Load() + hits[2].Load()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	if failing {
		b.ReportMetric(100*float64(hits[0].Load())/float64(max(attempts, 1)), "%-to-failing")
		b.ReportMetric(100*float64(r.errs)/float64(b.N), "%-errors")
		b.ReportMetric(float64(attempts)/float64(b.N), "attempts/call")
	} else {
		b.ReportMetric(100*float64(hits[0].Load())/float64(max(attempts, 1)), "%-to-slow")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rps")
	b.ReportMetric(ms(quantile(r.lat, 0.5)), "ms-p50")
	b.ReportMetric(ms(quantile(r.lat, 0.99)), "ms-p99")
}

// warmTail makes calls from tailCallers goroutines until reached holds,
// failing b after waitTimeout with what describes the state.
func warmTail(b *testing.B, cc grpc.ClientConnInterface, reached func() bool, what func() string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for range tailCallers {
		wg.Go(func() {
			for !reached() && ctx.Err() == nil {
				cctx, ccancel := context.WithTimeout(ctx, rpcTimeout)
				_ = testsvc.Sleep(cctx, cc, 0, grpc.WaitForReady(true))
				ccancel()
			}
		})
	}
	wg.Wait()
	if !reached() {
		b.Fatalf("not every instance reached within %s of warm-up: %s", waitTimeout, what())
	}
}
