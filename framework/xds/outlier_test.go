package xds_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/xds"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

// ejections counts the outlier ejections a gRPC xDS client records
// (grpc.lb.outlier_detection.ejections_enforced).
type ejections struct {
	estats.UnimplementedMetricsRecorder
	n atomic.Int64
}

func (e *ejections) RecordInt64Count(h *estats.Int64CountHandle, incr int64, _ ...string) {
	if h.Descriptor().Name == "grpc.lb.outlier_detection.ejections_enforced" {
		e.n.Add(incr)
	}
}

func (*ejections) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (*ejections) HandleRPC(context.Context, stats.RPCStats)                         {}
func (*ejections) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (*ejections) HandleConn(context.Context, stats.ConnStats)                       {}

// A plain grpc-go xDS client, told nothing but the management server's
// address, ejects one instance of three failing nine calls in ten: the
// Cluster carries DefaultOutlierDetection as Envoy's OutlierDetection.
func TestGRPCXDSClientEjectsAFailingInstance(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	var badCalls, n atomic.Int64
	bad := testsvc.Serve(t, grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		badCalls.Add(1)
		if n.Add(1)%10 != 0 {
			return nil, status.Error(codes.Unavailable, "failing")
		}
		return h(ctx, req)
	}))
	put(t, cli, "testsvc", bad)
	for range 2 {
		put(t, cli, "testsvc", testsvc.Serve(t))
	}
	xs, addr := startXDS(t, c)
	poll.Until(t, 10*time.Second, "3 instances served", func() bool { return len(xs.Services()["testsvc"]) == 3 })

	rec := &ejections{}
	cc, err := grpc.NewClient("xds:///testsvc", grpc.WithResolvers(xdsResolver(t, addr)),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	var failed, made atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := 0; i < 1_000_000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := testsvc.Sleep(ctx, cc, time.Millisecond, grpc.WaitForReady(true))
				cancel()
				made.Add(1)
				if err != nil {
					failed.Add(1)
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	poll.Until(t, 20*time.Second, "the bad instance called", func() bool { return badCalls.Load() > 0 })
	took := poll.Until(t, 10*time.Second, "an ejection", func() bool { return rec.n.Load() > 0 })
	before, since := badCalls.Load(), time.Now()
	poll.Until(t, 10*time.Second, "4 s more", func() bool { return time.Since(since) > 4*time.Second })
	reached := badCalls.Load() - before
	t.Logf("grpc-go xDS client: ejected %s after its first call to the bad instance; %d of %d calls failed; %d reached it in the 4 s after",
		took.Round(time.Millisecond), failed.Load(), made.Load(), reached)
	if reached > 4 {
		t.Errorf("%d calls reached the ejected instance, want ≤ 4 (those in flight)", reached)
	}
	if want := xds.DefaultOutlierDetection().Interval; took > 5*want {
		t.Errorf("ejected after %s, want within a few intervals of %s", took, want)
	}
}
