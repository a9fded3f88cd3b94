package lb_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"

	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/internal/testsvc"
)

// streamServer is a real gRPC server (health and the test service) that
// counts the health Watch streams it serves.
type streamServer struct {
	addr    string
	watches atomic.Int64
}

func startStreamServers(t *testing.T, n int) []*streamServer {
	t.Helper()
	out := make([]*streamServer, n)
	for i := range out {
		s := &streamServer{}
		s.addr = testsvc.Serve(t, grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if info.FullMethod == healthpb.Health_Watch_FullMethodName {
				s.watches.Add(1)
			}
			return h(srv, ss)
		}))
		out[i] = s
	}
	return out
}

// dialStreamServers dials srvs with p2c_ewma and waits until each has
// answered a call.
func dialStreamServers(t *testing.T, srvs []*streamServer) *grpc.ClientConn {
	t.Helper()
	var eps []resolver.Endpoint
	plain := make([]*server, len(srvs))
	for i, s := range srvs {
		eps = append(eps, endpoint(s.addr, 1))
		plain[i] = &server{addr: s.addr}
	}
	cc, _ := dial(t, lb.P2CEWMA, eps)
	waitAllReady(t, cc, plain)
	return cc
}

// shares makes n sequential health Checks and returns the calls per server.
func shares(t *testing.T, cc *grpc.ClientConn, n int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	counts := map[string]int{}
	for i := range n {
		p, err := call(ctx, cc)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		counts[p]++
	}
	return counts
}

// TestP2CStreamDoesNotStarve holds a real server-streaming call (health
// Watch) open for 3s, ends it, and checks that the server that carried it
// gets a fair share of the short calls that follow: a stream's duration is
// not a latency sample. p2c's share among equal servers is itself noisy on
// a loaded machine (one server can hold 60 % of 300 sequential calls for a
// while), so a trial that misses is tried again, up to three times; with a
// stream's duration taken as a sample every trial gives its server 0 %.
func TestP2CStreamDoesNotStarve(t *testing.T) {
	srvs := startStreamServers(t, 3)
	cc := dialStreamServers(t, srvs)
	_ = shares(t, cc, 100) // every server has an estimate

	const trials, n = 3, 300
	for trial := 1; ; trial++ {
		held := holdStream(t, cc, srvs, 3*time.Second)
		counts := shares(t, cc, n)
		have := float64(counts[held.addr]) / n
		t.Logf("trial %d: after a 3s stream on %s: %v", trial, held.addr, counts)
		if have >= 0.25 {
			return
		}
		if trial == trials {
			t.Fatalf("server of the stream got %.1f%% of %d calls after it ended in the last of %d trials, want ≥ 25%%", 100*have, n, trials)
		}
	}
}

// holdStream opens a health Watch on cc, holds it for d, ends it, and
// returns the server that carried it.
func holdStream(t *testing.T, cc *grpc.ClientConn, srvs []*streamServer, d time.Duration) *streamServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := make([]int64, len(srvs))
	for i, s := range srvs {
		before[i] = s.watches.Load()
	}
	w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatalf("watch: first status: %v", err)
	}
	var held *streamServer
	for i, s := range srvs {
		if s.watches.Load() > before[i] {
			held = s
		}
	}
	if held == nil {
		t.Fatal("no server counts the watch")
	}
	// The stream is the test's subject: it stays open for d, as a download
	// of a large file would.
	time.Sleep(d)
	cancel()
	// RecvMsg returns the cancellation only after the balancer's Done ran.
	for {
		if _, err := w.Recv(); err != nil {
			break
		}
	}
	return held
}

// TestP2CBringsBackAnInstanceAfterALongCall makes one unary call of 3s (a
// sample 10⁴ times the others') and checks that its server gets a fair
// share of sequential short calls again within 5s.
func TestP2CBringsBackAnInstanceAfterALongCall(t *testing.T) {
	srvs := startStreamServers(t, 3)
	cc := dialStreamServers(t, srvs)
	_ = shares(t, cc, 100)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var p peer.Peer
	if err := testsvc.Sleep(ctx, cc, 3*time.Second, grpc.Peer(&p)); err != nil {
		t.Fatalf("long call: %v", err)
	}
	slow := p.Addr.String()

	// Sequential short calls until the server of the long call has a fair
	// share of the last 300, for at most 5s and 200,000 calls.
	const n, limit = 300, 5 * time.Second
	start := time.Now()
	last := make([]bool, n) // ring: whether call i%n went to slow
	hits := 0
	for i := range 200_000 {
		p, err := call(ctx, cc)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if last[i%n] {
			hits--
		}
		last[i%n] = p == slow
		if last[i%n] {
			hits++
		}
		if i >= n && float64(hits)/n >= 0.25 {
			t.Logf("%s back after %s, %d calls", slow, time.Since(start).Round(time.Millisecond), i+1)
			return
		}
		if time.Since(start) > limit {
			break
		}
	}
	t.Fatalf("server of the long call not back within %s: %d of the last %d calls", limit, hits, n)
}
