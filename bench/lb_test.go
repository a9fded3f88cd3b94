package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/connectivity"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/internal/testsvc"
)

// ---------------------------------------------------------------------------
// A balancer.ClientConn that drives a real balancer without a channel.
//
// The balancer under test (svckit's policies or grpc-go's round_robin, each
// an endpointsharding of pickfirst children) is built through its registered
// builder and fed a resolver state with grpc-go's public balancer API. The
// harness hands out fake SubConns that never dial; the benchmark moves them
// to READY through the StateListener each one was created with (and the
// health listener pickfirst registers on READY), exactly as a channel would,
// and keeps the last picker the balancer publishes.

// pickHarness is the balancer.ClientConn of one balancer under test.
type pickHarness struct {
	// Embedded nil to satisfy the interface's embedding guard; every method
	// a balancer may call is implemented below.
	balancer.ClientConn

	mu       sync.Mutex
	subConns []*fakeSubConn
	state    balancer.State
	updates  int // UpdateState calls, i.e. pickers published
}

func (h *pickHarness) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	sc := &fakeSubConn{addrs: addrs, listener: opts.StateListener}
	h.mu.Lock()
	h.subConns = append(h.subConns, sc)
	h.mu.Unlock()
	return sc, nil
}

func (h *pickHarness) RemoveSubConn(sc balancer.SubConn)                    { sc.Shutdown() }
func (h *pickHarness) UpdateAddresses(balancer.SubConn, []resolver.Address) {}
func (h *pickHarness) ResolveNow(resolver.ResolveNowOptions)                {}
func (h *pickHarness) Target() string                                       { return pickTarget }
func (h *pickHarness) MetricsRecorder() estats.MetricsRecorder              { return noopRecorder{} }

func (h *pickHarness) UpdateState(s balancer.State) {
	h.mu.Lock()
	h.state = s
	h.updates++
	h.mu.Unlock()
}

func (h *pickHarness) current() (balancer.State, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state, h.updates
}

func (h *pickHarness) created() []*fakeSubConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*fakeSubConn(nil), h.subConns...)
}

const pickTarget = "bench:///pick"

// noopRecorder discards every metric a balancer records.
type noopRecorder struct{ estats.MetricsRecorder }

func (noopRecorder) RecordInt64Count(*estats.Int64CountHandle, int64, ...string)             {}
func (noopRecorder) RecordFloat64Count(*estats.Float64CountHandle, float64, ...string)       {}
func (noopRecorder) RecordInt64Histo(*estats.Int64HistoHandle, int64, ...string)             {}
func (noopRecorder) RecordFloat64Histo(*estats.Float64HistoHandle, float64, ...string)       {}
func (noopRecorder) RecordInt64Gauge(*estats.Int64GaugeHandle, int64, ...string)             {}
func (noopRecorder) RecordInt64UpDownCount(*estats.Int64UpDownCountHandle, int64, ...string) {}
func (noopRecorder) RegisterAsyncReporter(estats.AsyncMetricReporter, ...estats.AsyncMetric) func() {
	return func() {}
}

// fakeSubConn is a SubConn that never dials: its state moves only when the
// benchmark calls its listeners.
type fakeSubConn struct {
	// Embedded nil to satisfy the interface's embedding guard.
	balancer.SubConn

	addrs    []resolver.Address
	listener func(balancer.SubConnState)
	connects atomic.Int32
	shut     atomic.Bool

	mu     sync.Mutex
	health func(balancer.SubConnState)
}

func (sc *fakeSubConn) UpdateAddresses([]resolver.Address) {}
func (sc *fakeSubConn) Connect()                           { sc.connects.Add(1) }
func (sc *fakeSubConn) Shutdown()                          { sc.shut.Store(true) }

func (sc *fakeSubConn) GetOrBuildProducer(balancer.ProducerBuilder) (balancer.Producer, func()) {
	return nil, func() {}
}

// RegisterHealthListener records the listener; pickfirst registers it while
// holding its lock, so it is called later, from ready.
func (sc *fakeSubConn) RegisterHealthListener(f func(balancer.SubConnState)) {
	sc.mu.Lock()
	sc.health = f
	sc.mu.Unlock()
}

// ready moves the SubConn through CONNECTING to READY, and reports it
// healthy if a health listener was registered on READY.
func (sc *fakeSubConn) ready() {
	sc.listener(balancer.SubConnState{ConnectivityState: connectivity.Connecting})
	sc.listener(balancer.SubConnState{ConnectivityState: connectivity.Ready})
	sc.mu.Lock()
	health := sc.health
	sc.mu.Unlock()
	if health != nil {
		health(balancer.SubConnState{ConnectivityState: connectivity.Ready})
	}
}

// pickSetup is a balancer under test with n ready endpoints and its picker.
type pickSetup struct {
	picker balancer.Picker
	ramp   time.Duration // from the first SubConn's READY to the last picker
	close  func()
}

// newPickSetup builds policy's balancer over n endpoints (weights 1, 2, 3
// in turn on "svckit.weight"), moves every SubConn to READY and returns the
// picker that covers all n.
func newPickSetup(b *testing.B, policy string, n int) *pickSetup {
	b.Helper()
	builder := balancer.Get(policy)
	if builder == nil {
		b.Fatalf("balancer %q is not registered", policy)
	}
	var cfg serviceconfig.LoadBalancingConfig
	if p, ok := builder.(balancer.ConfigParser); ok {
		var err error
		if cfg, err = p.ParseConfig(json.RawMessage(`{}`)); err != nil {
			b.Fatalf("%s: parse config: %v", policy, err)
		}
	}
	u, err := url.Parse(pickTarget)
	if err != nil {
		b.Fatal(err)
	}
	h := &pickHarness{}
	bal := builder.Build(h, balancer.BuildOptions{Target: resolver.Target{URL: *u}})
	eps := make([]resolver.Endpoint, n)
	for i := range eps {
		eps[i] = resolver.Endpoint{
			Addresses:  []resolver.Address{{Addr: fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1)}},
			Attributes: attributes.New("svckit.weight", uint32(1+i%3)),
		}
	}
	if err := bal.UpdateClientConnState(balancer.ClientConnState{
		ResolverState:  resolver.State{Endpoints: eps},
		BalancerConfig: cfg,
	}); err != nil {
		bal.Close()
		b.Fatalf("%s: UpdateClientConnState: %v", policy, err)
	}
	scs := h.created()
	if len(scs) != n {
		bal.Close()
		b.Fatalf("%s: %d SubConns created for %d endpoints", policy, len(scs), n)
	}
	start := time.Now()
	for _, sc := range scs {
		sc.ready()
	}
	ramp := time.Since(start)
	st, updates := h.current()
	if st.ConnectivityState != connectivity.Ready || st.Picker == nil {
		bal.Close()
		b.Fatalf("%s: state %v after %d updates with every SubConn ready", policy, st.ConnectivityState, updates)
	}
	typ := fmt.Sprintf("%T", st.Picker)
	if policy != roundrobin.Name && strings.Contains(typ, "endpointsharding") {
		bal.Close()
		b.Fatalf("%s: the published picker is endpointsharding's (%s), not the policy's", policy, typ)
	}
	checkCoverage(b, policy, st.Picker, n)
	b.Logf("%s/%d: picker %s; %d pickers published; all %d ready in %s", policy, n, typ, updates, n, ramp)
	return &pickSetup{picker: st.Picker, ramp: ramp, close: bal.Close}
}

// checkCoverage fails b unless picker reaches all n SubConns within a
// bounded number of picks (a fresh hash key each pick for
// svckit_consistent_hash).
func checkCoverage(b *testing.B, policy string, picker balancer.Picker, n int) {
	b.Helper()
	seen := make(map[balancer.SubConn]bool, n)
	info := balancer.PickInfo{FullMethodName: testsvc.SleepMethod, Ctx: context.Background()}
	limit := 200*n + 1000
	for i := 0; i < limit && len(seen) < n; i++ {
		if policy == lb.ConsistentHash {
			info.Ctx = lb.WithHashKey(context.Background(), "cover-"+strconv.Itoa(i))
		}
		res, err := picker.Pick(info)
		if err != nil {
			b.Fatalf("%s: pick %d: %v", policy, i, err)
		}
		if res.Done != nil {
			res.Done(balancer.DoneInfo{})
		}
		if _, ok := res.SubConn.(*fakeSubConn); !ok {
			b.Fatalf("%s: pick %d returned SubConn %T", policy, i, res.SubConn)
		}
		seen[res.SubConn] = true
	}
	if len(seen) < n {
		b.Fatalf("%s: %d picks reached %d of %d endpoints", policy, limit, len(seen), n)
	}
}

// BenchmarkPick measures one Picker.Pick (and the Done that follows it, if
// any) of each policy over 3, 100 and 1000 ready endpoints.
func BenchmarkPick(b *testing.B) {
	policies := []string{lb.P2CEWMA, lb.WeightedRoundRobin, lb.Random, lb.ConsistentHash, roundrobin.Name}
	for _, policy := range policies {
		b.Run(policy, func(b *testing.B) {
			for _, n := range []int{3, 100, 1000} {
				// The setup is built once per size, on the first call of the
				// sub-benchmark, and closed when the policy's benchmark ends.
				var setup *pickSetup
				b.Run(strconv.Itoa(n), func(b *testing.B) {
					if setup == nil {
						setup = newPickSetup(b, policy, n)
					}
					benchPick(b, policy, setup)
				})
				if setup != nil {
					setup.close()
				}
			}
		})
	}
}

// hashKeys is how many distinct keys the svckit_consistent_hash benchmark
// cycles through (a power of two).
const hashKeys = 4096

func benchPick(b *testing.B, policy string, s *pickSetup) {
	info := balancer.PickInfo{FullMethodName: testsvc.SleepMethod, Ctx: context.Background()}
	var keyed []context.Context
	if policy == lb.ConsistentHash {
		keyed = make([]context.Context, hashKeys)
		for i := range keyed {
			keyed[i] = lb.WithHashKey(context.Background(), "user-"+strconv.Itoa(i))
		}
	}
	picker := s.picker
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if keyed != nil {
			info.Ctx = keyed[i&(hashKeys-1)]
		}
		res, err := picker.Pick(info)
		if err != nil {
			b.Fatalf("pick %d: %v", i, err)
		}
		if res.Done != nil {
			res.Done(balancer.DoneInfo{})
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(s.ramp)/float64(time.Millisecond), "ms-ramp")
}
