package lb_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/lb"
)

// watchServer is a real gRPC server whose health Watch, a server stream the
// protobuf registry knows, sends one status and ends OK, or fails with
// Internal once after failOnce is set: an instance of a stream-only
// service.
type watchServer struct {
	healthpb.UnimplementedHealthServer
	addr     string
	failOnce atomic.Bool
}

func (s *watchServer) Watch(_ *healthpb.HealthCheckRequest, ss grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	if s.failOnce.CompareAndSwap(true, false) {
		return status.Error(codes.Internal, "test: one failed stream")
	}
	return ss.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
}

func startWatchServers(t *testing.T, n int) []*watchServer {
	t.Helper()
	out := make([]*watchServer, n)
	for i := range out {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := &watchServer{addr: lis.Addr().String()}
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, s)
		done := make(chan struct{})
		go func() { defer close(done); _ = gs.Serve(lis) }()
		t.Cleanup(func() { gs.Stop(); <-done })
		out[i] = s
	}
	return out
}

// watch runs one Watch stream to its end and returns the address that
// served it.
func watch(ctx context.Context, cc *grpc.ClientConn) (string, error) {
	var p peer.Peer
	w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
	if err != nil {
		return "", err
	}
	for {
		if _, err = w.Recv(); err != nil {
			break
		}
	}
	if p.Addr == nil {
		return "", errors.Join(errors.New("no peer"), err)
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return p.Addr.String(), err
}

// TestP2CFailedStreamDoesNotSidelineAStreamOnlyInstance: three instances
// of a service that has only streams; one stream on the first fails with
// Internal, then its streams succeed again. Within 5s of sequential
// streams it must hold a fair share of the last 300 again. Streams take no
// latency samples, so before the fix the failure's 250 ms penalty stayed
// for good and the instance got only the forced picks (4 of ~4,000 in 5s).
func TestP2CFailedStreamDoesNotSidelineAStreamOnlyInstance(t *testing.T) {
	srvs := startWatchServers(t, 3)
	var eps []resolver.Endpoint
	for _, s := range srvs {
		eps = append(eps, endpoint(s.addr, 1))
	}
	cc, _ := dial(t, lb.P2CEWMA, eps)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Warm up with streams only, until every instance has served some.
	seen := map[string]int{}
	for i := 0; len(seen) < len(srvs) || i < 100; i++ {
		addr, err := watch(ctx, cc)
		if err != nil {
			t.Fatalf("warm-up stream %d: %v", i, err)
		}
		seen[addr]++
	}

	bad := srvs[0]
	bad.failOnce.Store(true)
	for i := 0; bad.failOnce.Load(); i++ {
		addr, err := watch(ctx, cc)
		if err != nil && (status.Code(err) != codes.Internal || addr != bad.addr) {
			t.Fatalf("stream %d: %s: %v, want the failure on %s only", i, addr, err, bad.addr)
		}
	}

	const n, limit = 300, 5 * time.Second
	start := time.Now()
	last := make([]bool, n) // ring: whether stream i%n went to bad
	hits, total := 0, map[string]int{}
	for i := range 200_000 {
		addr, err := watch(ctx, cc)
		if err != nil {
			t.Fatalf("stream %d after the failure: %v", i, err)
		}
		total[addr]++
		if last[i%n] {
			hits--
		}
		last[i%n] = addr == bad.addr
		if last[i%n] {
			hits++
		}
		if i >= n && float64(hits)/n >= 0.25 {
			t.Logf("%s back after %s, %d streams: %v", bad.addr, time.Since(start).Round(time.Millisecond), i+1, total)
			return
		}
		if time.Since(start) > limit {
			break
		}
	}
	t.Fatalf("instance with one failed stream not back within %s: %d of the last %d streams; all: %v", limit, hits, n, total)
}
