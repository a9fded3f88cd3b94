package lb_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/internal/testsvc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is a real gRPC server on 127.0.0.1 answering health checks after
// an optional delay or with an optional error.
type server struct {
	addr string
	mu   sync.Mutex
	lag  time.Duration
	err  error
}

func (s *server) set(lag time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lag, s.err = lag, err
}

func startServers(t *testing.T, n int) []*server {
	t.Helper()
	out := make([]*server, n)
	for i := range out {
		s := &server{}
		s.addr = testsvc.Serve(t, grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			s.mu.Lock()
			lag, err := s.lag, s.err
			s.mu.Unlock()
			if lag > 0 {
				time.Sleep(lag)
			}
			if err != nil {
				return nil, err
			}
			return h(ctx, req)
		}))
		out[i] = s
	}
	return out
}

func endpoint(addr string, weight uint32) resolver.Endpoint {
	return resolver.Endpoint{
		Addresses:  []resolver.Address{{Addr: addr}},
		Attributes: attributes.New("svckit.weight", weight),
	}
}

// dial connects to the endpoints through a manual resolver with policy.
func dial(t *testing.T, policy string, eps []resolver.Endpoint) (*grpc.ClientConn, *manual.Resolver) {
	t.Helper()
	r := manual.NewBuilderWithScheme("lbtest")
	r.InitialState(resolver.State{Endpoints: eps})
	cc, err := grpc.NewClient(r.Scheme()+":///svc",
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(fmt.Sprintf(`{"loadBalancingConfig":[{%q:{}}]}`, policy)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	cc.Connect()
	return cc, r
}

func call(ctx context.Context, cc *grpc.ClientConn) (string, error) {
	var p peer.Peer
	_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
	if err != nil {
		return "", err
	}
	return p.Addr.String(), nil
}

// waitAllReady makes calls until every server has answered one.
func waitAllReady(t *testing.T, cc *grpc.ClientConn, srvs []*server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seen := map[string]bool{}
	for len(seen) < len(srvs) {
		p, err := call(ctx, cc)
		if err != nil {
			t.Fatalf("warm-up call: %v", err)
		}
		seen[p] = true
	}
}

// spread makes n calls from workers goroutines and counts calls per server.
func spread(t *testing.T, cc *grpc.ClientConn, n, workers int, key func(i int) context.Context) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range workers {
		wg.Go(func() {
			for i := range next {
				ctx := context.Background()
				if key != nil {
					ctx = key(i)
				}
				ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				p, err := call(ctx, cc)
				cancel()
				if err != nil {
					t.Errorf("call %d: %v", i, err)
					return
				}
				mu.Lock()
				counts[p]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return counts
}

func within(have, want, tol float64) bool { return math.Abs(have-want) <= tol*want }

func TestEvenPolicies(t *testing.T) {
	for _, policy := range []string{lb.Random, lb.WeightedRoundRobin, lb.ConsistentHash, "round_robin"} {
		t.Run(policy, func(t *testing.T) {
			srvs := startServers(t, 3)
			var eps []resolver.Endpoint
			for _, s := range srvs {
				eps = append(eps, endpoint(s.addr, 1))
			}
			cc, _ := dial(t, policy, eps)
			waitAllReady(t, cc, srvs)
			const n = 3000
			counts := spread(t, cc, n, 4, nil)
			for _, s := range srvs {
				if have := float64(counts[s.addr]); !within(have, n/3, 0.10) {
					t.Errorf("%s got %v of %d calls, want %d ±10%%", s.addr, have, n, n/3)
				}
			}
			t.Logf("%s: %v", policy, counts)
		})
	}
}

func TestWeightedRoundRobinFollowsWeights(t *testing.T) {
	srvs := startServers(t, 3)
	eps := []resolver.Endpoint{endpoint(srvs[0].addr, 1), endpoint(srvs[1].addr, 2), endpoint(srvs[2].addr, 3)}
	cc, _ := dial(t, lb.WeightedRoundRobin, eps)
	waitAllReady(t, cc, srvs)
	const n = 3000
	counts := spread(t, cc, n, 1, nil)
	for i, s := range srvs {
		want := float64(n) * float64(i+1) / 6
		if have := float64(counts[s.addr]); !within(have, want, 0.10) {
			t.Errorf("weight %d: %v calls, want %v ±10%%", i+1, have, want)
		}
	}
	t.Logf("weights 1:2:3 → %d:%d:%d", counts[srvs[0].addr], counts[srvs[1].addr], counts[srvs[2].addr])
}

func TestConsistentHashMovesFewKeysWhenAnEndpointJoins(t *testing.T) {
	srvs := startServers(t, 4)
	var eps []resolver.Endpoint
	for _, s := range srvs[:3] {
		eps = append(eps, endpoint(s.addr, 1))
	}
	cc, r := dial(t, lb.ConsistentHash, eps)
	waitAllReady(t, cc, srvs[:3])
	const n = 10_000
	route := func() []string {
		out := make([]string, n)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := w; i < n; i += 4 {
					p, err := call(lb.WithHashKey(ctx, fmt.Sprintf("user-%d", i)), cc)
					if err != nil {
						t.Errorf("key %d: %v", i, err)
						return
					}
					out[i] = p
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		return out
	}
	before := route()
	again := route()
	for i := range before {
		if before[i] != again[i] {
			t.Fatalf("key %d moved with a stable set: %s → %s", i, before[i], again[i])
		}
	}
	r.UpdateState(resolver.State{Endpoints: append(eps, endpoint(srvs[3].addr, 1))})
	waitAllReady(t, cc, srvs)
	after := route()
	moved, between := 0, 0
	for i := range before {
		if before[i] != after[i] {
			moved++
			if after[i] != srvs[3].addr {
				between++
			}
		}
	}
	t.Logf("4th endpoint joined: %d of %d keys moved (%.1f%%), %d between old endpoints", moved, n, 100*float64(moved)/n, between)
	if moved > n*30/100 {
		t.Errorf("%d keys moved, want ≤ 30%%", moved)
	}
	if between != 0 {
		t.Errorf("%d keys moved between the old endpoints, want 0", between)
	}
}

func TestP2CAvoidsSlowAndFailingServers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lag   time.Duration
		err   error
		limit float64
	}{
		{"100ms slower", 100 * time.Millisecond, nil, 0.10},
		{"failing fast", 0, status.Error(codes.Unavailable, "down"), 0.05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srvs := startServers(t, 3)
			var eps []resolver.Endpoint
			for _, s := range srvs {
				eps = append(eps, endpoint(s.addr, 1))
			}
			cc, _ := dial(t, lb.P2CEWMA, eps)
			waitAllReady(t, cc, srvs)
			bad := srvs[0]
			bad.set(tc.lag, tc.err)
			const n = 1000
			var mu sync.Mutex
			counts := map[string]int{}
			var wg sync.WaitGroup
			per := n / 8
			for range 8 {
				wg.Go(func() {
					for range per {
						var p peer.Peer
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						_, _ = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
						cancel()
						if p.Addr != nil {
							mu.Lock()
							counts[p.Addr.String()]++
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			share := float64(counts[bad.addr]) / float64(per*8)
			t.Logf("%s: bad server got %d of %d calls (%.1f%%)", tc.name, counts[bad.addr], per*8, 100*share)
			if share >= tc.limit {
				t.Errorf("bad server share %.1f%%, want < %.0f%%", 100*share, 100*tc.limit)
			}
		})
	}
}

func TestNoReadyEndpointFailsFast(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	_ = l.Close()
	for _, policy := range []string{lb.P2CEWMA, lb.Random, lb.WeightedRoundRobin, lb.ConsistentHash} {
		t.Run(policy, func(t *testing.T) {
			cc, _ := dial(t, policy, []resolver.Endpoint{endpoint(dead, 1)})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("have %v, want Unavailable", err)
			}
			t.Logf("%s: failed in %s: %v", policy, time.Since(start).Round(time.Millisecond), err)
		})
	}
}
