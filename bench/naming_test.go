package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	etcdresolver "go.etcd.io/etcd/client/v3/naming/resolver"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/testsvc"
)

// Every benchmark checks at the end that it left no goroutine behind.
func TestMain(m *testing.M) {
	var opts []goleak.Option
	for _, f := range etcdtest.PeerLeaks() {
		opts = append(opts, goleak.IgnoreAnyFunction(f))
	}
	goleak.VerifyTestMain(m, opts...)
}

const (
	// waitTimeout bounds every wait of setup, teardown and measurement.
	waitTimeout = 20 * time.Second
	// rpcTimeout bounds a single health check while waiting for the first
	// successful one.
	rpcTimeout = 2 * time.Second
	// roundRobin is the service config of connections that make RPCs.
	roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`
)

var quiet = slog.New(slog.DiscardHandler)

// ---------------------------------------------------------------------------
// Setup helpers.

// startEtcd starts an embedded single-member etcd and returns a quiet
// client of it; both are closed when b ends (client first).
func startEtcd(b *testing.B) *clientv3.Client {
	b.Helper()
	c := etcdtest.Start(b)
	cli, err := naming.NewClient(naming.ClientConfig{Endpoints: c.Endpoints(), Logger: quiet})
	if err != nil {
		b.Fatalf("etcd client: %v", err)
	}
	b.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := naming.Ping(ctx, cli); err != nil {
		b.Fatalf("etcd: %v", err)
	}
	return cli
}

// newConn returns a client connection of target that is not yet connected.
// The caller closes it.
func newConn(b *testing.B, rb resolver.Builder, target, serviceConfig string) *grpc.ClientConn {
	b.Helper()
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(serviceConfig),
	}
	if rb != nil {
		opts = append(opts, grpc.WithResolvers(rb))
	}
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		b.Fatalf("new client %s: %v", target, err)
	}
	return cc
}

// checkUntilOK makes health checks that wait for a ready connection until one
// succeeds or ctx ends.
func checkUntilOK(ctx context.Context, hc healthpb.HealthClient) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no successful health check: %w", err)
		}
		if !errors.Is(cctx.Err(), context.DeadlineExceeded) {
			time.Sleep(time.Millisecond) // A fast failure; do not spin.
		}
	}
}

// waitFor polls cond every 100µs until it holds or timeout passes.
func waitFor(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("%s: not true within %s", what, waitTimeout)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// ---------------------------------------------------------------------------
// Duration statistics.

// msQuantile returns the q-quantile (0 < q ≤ 1, nearest rank; the median of
// an even count is the mean of the middle two) of ds in milliseconds.
func msQuantile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	if q == 0.5 && len(s)%2 == 0 {
		return (ms(s[len(s)/2-1]) + ms(s[len(s)/2])) / 2
	}
	i := int(q*float64(len(s))+0.999999) - 1
	return ms(s[max(0, min(i, len(s)-1))])
}

func reportQuantiles(b *testing.B, ds []time.Duration) {
	b.ReportMetric(msQuantile(ds, 0.5), "ms-median")
	b.ReportMetric(msQuantile(ds, 0.9), "ms-p90")
}

// ---------------------------------------------------------------------------
// BenchmarkRegisterToFirstRPC

// registerFunc registers addr as an instance of service and returns the
// function that removes it again.
type registerFunc func(ctx context.Context, service, addr string) (func(context.Context) error, error)

// BenchmarkRegisterToFirstRPC measures how long after a server starts to
// register a client that already resolves the (empty) service makes its
// first successful RPC to it.
func BenchmarkRegisterToFirstRPC(b *testing.B) {
	b.Run("svckit", func(b *testing.B) {
		cli := startEtcd(b)
		addr := testsvc.Serve(b)
		nb := naming.NewBuilder(cli, naming.WithResolverLogger(quiet))
		ready := func(name string) {
			waitFor(b, "svckit resolver listed services/"+name, func() bool {
				st, ok := nb.Status("services/" + name)
				return ok && st.Lists >= 1
			})
		}
		register := func(ctx context.Context, service, addr string) (func(context.Context) error, error) {
			r, err := naming.NewRegistrar(cli, naming.Instance{Service: service, Addr: addr}, naming.WithLogger(quiet))
			if err != nil {
				return nil, err
			}
			if err := r.Register(ctx); err != nil {
				return nil, err
			}
			return r.Deregister, nil
		}
		// Closing a connection closes its resolver; the watch must stop
		// with it.
		stopped := func(name string) bool { _, ok := nb.Status("services/" + name); return !ok }
		benchRegisterToFirstRPC(b, nb, addr, ready, register, stopped)
	})
	b.Run("etcd", func(b *testing.B) {
		cli := startEtcd(b)
		addr := testsvc.Serve(b)
		eb, err := etcdresolver.NewBuilder(cli)
		if err != nil {
			b.Fatal(err)
		}
		// etcd's resolver lists the prefix inside Build, that is inside
		// Connect, and watches from the next revision: nothing to wait for.
		ready := func(string) {}
		register := func(ctx context.Context, service, addr string) (func(context.Context) error, error) {
			em, err := endpoints.NewManager(cli, "services/"+service)
			if err != nil {
				return nil, err
			}
			lease, err := cli.Grant(ctx, 10)
			if err != nil {
				return nil, err
			}
			// Keep the lease alive as a real server would.
			kctx, kcancel := context.WithCancel(context.Background())
			if _, err := cli.KeepAlive(kctx, lease.ID); err != nil {
				kcancel()
				return nil, err
			}
			key := "services/" + service + "/" + addr
			if err := em.AddEndpoint(ctx, key, endpoints.Endpoint{Addr: addr}, clientv3.WithLease(lease.ID)); err != nil {
				kcancel()
				return nil, err
			}
			return func(ctx context.Context) error {
				kcancel()
				err := em.DeleteEndpoint(ctx, key)
				_, rerr := cli.Revoke(ctx, lease.ID)
				return errors.Join(err, rerr)
			}, nil
		}
		stopped := func(string) bool { return true } // Close waits for the resolver.
		benchRegisterToFirstRPC(b, eb, addr, ready, register, stopped)
	})
}

func benchRegisterToFirstRPC(b *testing.B, rb resolver.Builder, addr string,
	ready func(service string), register registerFunc, stopped func(service string) bool) {
	b.Helper()
	durs := make([]time.Duration, 0, b.N)
	b.StopTimer()
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("reg%d", i)
		cc := newConn(b, rb, "etcd:///services/"+name, roundRobin)
		cc.Connect()
		ready(name)
		hc := healthpb.NewHealthClient(cc)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)

		b.StartTimer()
		start := time.Now()
		deregister, err := register(ctx, name, addr)
		if err == nil {
			err = checkUntilOK(ctx, hc)
		}
		d := time.Since(start)
		b.StopTimer()

		_ = cc.Close()
		if deregister != nil {
			if derr := deregister(ctx); derr != nil && err == nil {
				err = fmt.Errorf("deregister: %w", derr)
			}
		}
		cancel()
		if err != nil {
			b.Fatalf("iteration %d (%s): %v", i, name, err)
		}
		waitFor(b, "resolver of "+name+" stopped", func() bool { return stopped(name) })
		durs = append(durs, d)
	}
	reportQuantiles(b, durs)
}

// ---------------------------------------------------------------------------
// BenchmarkResolveN

// counterName is a balancer that connects to nothing and signals when the
// resolver state it gets holds as many endpoints as its target wants, so
// that resolution can be timed without dialing thousands of addresses.
const counterName = "bench_counter"

const counterConfig = `{"loadBalancingConfig":[{"` + counterName + `":{}}]}`

// counterWant is what a connection of one target waits for.
type counterWant struct {
	n    int
	once sync.Once
	done chan struct{}
}

var counterWants sync.Map // target string → *counterWant

func init() { balancer.Register(counterBuilder{}) }

type counterBuilder struct{}

func (counterBuilder) Name() string { return counterName }

func (counterBuilder) Build(_ balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	w, _ := counterWants.Load(opts.Target.String())
	cw, _ := w.(*counterWant)
	return &counterBalancer{w: cw}
}

type counterBalancer struct{ w *counterWant }

func (c *counterBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	if c.w == nil {
		return nil
	}
	n := len(s.ResolverState.Endpoints)
	if n == 0 {
		n = len(s.ResolverState.Addresses)
	}
	if n >= c.w.n {
		c.w.once.Do(func() { close(c.w.done) })
	}
	return nil
}
func (c *counterBalancer) ResolverError(error)                                        {}
func (c *counterBalancer) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}
func (c *counterBalancer) Close()                                                     {}
func (c *counterBalancer) ExitIdle()                                                  {}

// bulkRecord returns the address and the encoded record of instance i: a
// realistic record of about 200 bytes.
func bulkRecord(i int) (string, []byte, error) {
	addr := fmt.Sprintf("10.%d.%d.%d:%d", 1+i>>16&0xff, i>>8&0xff, i&0xff, 8000+i%1000)
	v, err := naming.Record{Addr: addr, Metadata: naming.Metadata{
		InstanceID: fmt.Sprintf("bulk-%06d-7f9c2d", i),
		Version:    "v1.42." + strconv.Itoa(i%7) + "-g3e1a9c0",
		Zone:       "eu-west-1" + string(rune('a'+i%3)),
		Weight:     uint32(1 + i%10),
		StartTime:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Second),
		Services:   []string{"svckit.bench.v1.Bulk", "grpc.health.v1.Health"},
	}}.Encode()
	return addr, v, err
}

// loadBulk puts n records under services/bulk<n>/ in transactions of 100
// puts, four at a time.
func loadBulk(b *testing.B, cli *clientv3.Client, n int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	service := fmt.Sprintf("bulk%d", n)
	const batch, workers = 100, 4
	batches := make(chan []clientv3.Op, (n+batch-1)/batch)
	size := 0
	for first := 0; first < n; first += batch {
		ops := make([]clientv3.Op, 0, batch)
		for i := first; i < min(first+batch, n); i++ {
			addr, v, err := bulkRecord(i)
			if err != nil {
				b.Fatalf("record %d: %v", i, err)
			}
			size += len(v)
			ops = append(ops, clientv3.OpPut(naming.Key(naming.DefaultPrefix, service, addr), string(v)))
		}
		batches <- ops
	}
	close(batches)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ops := range batches {
				if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("load %s: %v", service, err)
	}
	resp, err := cli.Get(ctx, naming.DefaultPrefix+service+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != int64(n) {
		b.Fatalf("load %s: %d keys, %v; want %d", service, respCount(resp), err, n)
	}
	b.Logf("loaded %d records under %s%s/, %d bytes each on average", n, naming.DefaultPrefix, service, size/n)
}

func respCount(r *clientv3.GetResponse) int64 {
	if r == nil {
		return -1
	}
	return r.Count
}

// BenchmarkResolveN measures how long a fresh resolver takes to hand N
// endpoints to its connection's balancer.
func BenchmarkResolveN(b *testing.B) {
	cli := startEtcd(b)
	sizes := []int{1000, 10000}
	var loadOnce [2]sync.Once
	load := func(b *testing.B, k int) {
		loadOnce[k].Do(func() { loadBulk(b, cli, sizes[k]) })
	}
	iter := 0 // makes every target unique
	variants := []struct {
		name    string
		builder func(b *testing.B) (resolver.Builder, func(service string) bool)
	}{
		{"svckit", func(b *testing.B) (resolver.Builder, func(string) bool) {
			nb := naming.NewBuilder(cli, naming.WithResolverLogger(quiet))
			return nb, func(service string) bool { _, ok := nb.Status("services/" + service); return ok }
		}},
		{"etcd", func(b *testing.B) (resolver.Builder, func(string) bool) {
			eb, err := etcdresolver.NewBuilder(cli)
			if err != nil {
				b.Fatal(err)
			}
			return eb, func(string) bool { return false }
		}},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			for k, n := range sizes {
				b.Run(strconv.Itoa(n), func(b *testing.B) {
					load(b, k)
					service := fmt.Sprintf("bulk%d", n)
					durs := make([]time.Duration, 0, b.N)
					b.StopTimer()
					b.ResetTimer()
					for range b.N {
						iter++
						rb, watching := v.builder(b)
						// The authority makes the target unique (balancers see
						// targets without their query); both resolvers read
						// only its path.
						target := fmt.Sprintf("etcd://iter%d/services/%s", iter, service)
						w := &counterWant{n: n, done: make(chan struct{})}
						counterWants.Store(target, w)
						timeout := time.NewTimer(waitTimeout)

						b.StartTimer()
						start := time.Now()
						cc := newConn(b, rb, target, counterConfig)
						cc.Connect()
						var timedOut bool
						select {
						case <-w.done:
						case <-timeout.C:
							timedOut = true
						}
						d := time.Since(start)
						b.StopTimer()

						timeout.Stop()
						_ = cc.Close()
						counterWants.Delete(target)
						if timedOut {
							b.Fatalf("%s: %d endpoints not resolved within %s", target, n, waitTimeout)
						}
						waitFor(b, "resolver of "+target+" stopped", func() bool { return !watching(service) })
						durs = append(durs, d)
					}
					reportQuantiles(b, durs)
				})
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Steady-state RPCs

// benchHealthChecks makes b.N health checks over cc after a first one that
// waits for the connection.
func benchHealthChecks(b *testing.B, cc *grpc.ClientConn) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	hc := healthpb.NewHealthClient(cc)
	wctx, wcancel := context.WithTimeout(ctx, waitTimeout)
	err := checkUntilOK(wctx, hc)
	wcancel()
	if err != nil {
		b.Fatal(err)
	}
	req := &healthpb.HealthCheckRequest{}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := hc.Check(ctx, req); err != nil {
			b.Fatalf("check: %v", err)
		}
	}
	b.StopTimer()
}

// BenchmarkBareGRPCHealthCheck is the baseline: a health check over a
// passthrough target (no resolver work), with round_robin like the others.
func BenchmarkBareGRPCHealthCheck(b *testing.B) {
	addr := testsvc.Serve(b)
	cc := newConn(b, nil, "passthrough:///"+addr, roundRobin)
	b.Cleanup(func() { _ = cc.Close() })
	benchHealthChecks(b, cc)
}

// BenchmarkResolvedHealthCheck is the same health check over etcd:///
// targets resolved by svckit's and by etcd's resolver.
func BenchmarkResolvedHealthCheck(b *testing.B) {
	b.Run("svckit", func(b *testing.B) {
		cli := startEtcd(b)
		addr := testsvc.Serve(b)
		r, err := naming.NewRegistrar(cli, naming.Instance{Service: "steady", Addr: addr}, naming.WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := r.Register(ctx); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = r.Deregister(context.Background()) })
		cc := newConn(b, naming.NewBuilder(cli, naming.WithResolverLogger(quiet)), "etcd:///services/steady", roundRobin)
		b.Cleanup(func() { _ = cc.Close() })
		benchHealthChecks(b, cc)
	})
	b.Run("etcd", func(b *testing.B) {
		cli := startEtcd(b)
		addr := testsvc.Serve(b)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		em, err := endpoints.NewManager(cli, "services/steady")
		if err != nil {
			b.Fatal(err)
		}
		lease, err := cli.Grant(ctx, 30)
		if err != nil {
			b.Fatal(err)
		}
		kctx, kcancel := context.WithCancel(context.Background())
		b.Cleanup(kcancel)
		if _, err := cli.KeepAlive(kctx, lease.ID); err != nil {
			b.Fatal(err)
		}
		if err := em.AddEndpoint(ctx, "services/steady/"+addr, endpoints.Endpoint{Addr: addr}, clientv3.WithLease(lease.ID)); err != nil {
			b.Fatal(err)
		}
		eb, err := etcdresolver.NewBuilder(cli)
		if err != nil {
			b.Fatal(err)
		}
		cc := newConn(b, eb, "etcd:///services/steady", roundRobin)
		b.Cleanup(func() { _ = cc.Close() })
		benchHealthChecks(b, cc)
	})
}
