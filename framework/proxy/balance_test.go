package proxy_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/svckit/svckit/framework/proxy"
)

// The feed service is written by hand, like internal/testsvc, so no
// protobuf descriptor of it is registered: the proxy (and this test
// binary) cannot tell its stream from its unary method by the registry.
const (
	feedService = "svckit.proxytest.Feed"
	feedPing    = "/" + feedService + "/Ping"
	feedHold    = "/" + feedService + "/Hold"
)

// feedInstance counts the calls one instance serves.
type feedInstance struct {
	pings, holds atomic.Int64
}

var feedDesc = grpc.ServiceDesc{
	ServiceName: feedService,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Ping",
		Handler: func(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(emptypb.Empty)); err != nil {
				return nil, err
			}
			srv.(*feedInstance).pings.Add(1)
			return new(emptypb.Empty), nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		// Hold sends a message every 100ms for the duration asked, then
		// ends OK: a download of a large file, as the balancer sees it.
		StreamName:    "Hold",
		ServerStreams: true,
		Handler: func(srv any, ss grpc.ServerStream) error {
			srv.(*feedInstance).holds.Add(1)
			d := new(durationpb.Duration)
			if err := ss.RecvMsg(d); err != nil {
				return err
			}
			end := time.NewTimer(d.AsDuration())
			defer end.Stop()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-end.C:
					return nil
				case <-ss.Context().Done():
					return ss.Context().Err()
				case <-tick.C:
					if err := ss.SendMsg(new(emptypb.Empty)); err != nil {
						return err
					}
				}
			}
		},
	}},
}

// hold runs Hold for d through cc to its end.
func hold(ctx context.Context, cc *grpc.ClientConn, d time.Duration) error {
	s, err := cc.NewStream(ctx, &feedDesc.Streams[0], feedHold)
	if err != nil {
		return err
	}
	if err := s.SendMsg(durationpb.New(d)); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for {
		if err := s.RecvMsg(new(emptypb.Empty)); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// TestProxyLongStreamOfUnlinkedServiceDoesNotStarve: three instances of a
// service whose descriptors the proxy does not link; a 3s stream through
// the proxy, then 300 sequential unary calls through it. The instance that
// served the stream must get ≥ 25 % of them. Before the proxy marked its
// calls, the balancer took the stream for a 3s unary call and its
// instance got 0 of 300.
func TestProxyLongStreamOfUnlinkedServiceDoesNotStarve(t *testing.T) {
	c, cli := startEtcd(t)
	insts := make([]*feedInstance, 3)
	for i := range insts {
		in := &feedInstance{}
		insts[i] = in
		startApp(t, c, cli, "feed", func(s *grpc.Server) { s.RegisterService(&feedDesc, in) })
	}
	p, addr := startProxy(t, cli)
	waitRoute(t, p, feedService, "feed")
	cc := dialProxy(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ping := func() error { return cc.Invoke(ctx, feedPing, new(emptypb.Empty), new(emptypb.Empty)) }
	pings := func() []int64 {
		out := make([]int64, len(insts))
		for i, in := range insts {
			out[i] = in.pings.Load()
		}
		return out
	}

	// Warm up until every instance has answered, and at least 100 calls.
	for i := 0; ; i++ {
		if err := ping(); err != nil {
			t.Fatalf("warm-up call %d: %v", i, err)
		}
		if have := pings(); i >= 100 && have[0] > 0 && have[1] > 0 && have[2] > 0 {
			break
		}
		if i == 10_000 {
			t.Fatalf("warm-up: not every instance answered within %d calls: %v", i, pings())
		}
	}

	if err := hold(ctx, cc, 3*time.Second); err != nil {
		t.Fatalf("3s stream: %v", err)
	}
	held := -1
	for i, in := range insts {
		if in.holds.Load() == 1 {
			held = i
		}
	}
	if held < 0 {
		t.Fatal("no instance counts the stream")
	}

	before := pings()
	const n = 300
	for i := range n {
		if err := ping(); err != nil {
			t.Fatalf("call %d after the stream: %v", i, err)
		}
	}
	after := pings()
	got := make([]int64, len(insts))
	for i := range got {
		got[i] = after[i] - before[i]
	}
	t.Logf("after a 3s stream on instance %d: %v of %d calls", held, got, n)
	if have := float64(got[held]) / n; have < 0.25 {
		t.Errorf("instance of the stream got %.1f%% of %d calls after it ended, want ≥ 25%%", 100*have, n)
	}
}

// TestMaxHeaderListSize: the proxy refuses a call whose headers exceed
// 64 KiB (grpc-go would take 16 MiB) and forwards one with 32 KiB of
// metadata; with WithMaxHeaderListSize(256 KiB) it forwards 128 KiB.
func TestMaxHeaderListSize(t *testing.T) {
	c, cli := startEtcd(t)
	startProbe(t, c, cli)
	p, addr := startProxy(t, cli)
	waitRoute(t, p, echoService, "probe")
	big, bigAddr := startProxy(t, cli, proxy.WithMaxHeaderListSize(256<<10))
	waitRoute(t, big, echoService, "probe")
	cc, bigCC := dialProxy(t, addr), dialProxy(t, bigAddr)
	for _, tc := range []struct {
		name string
		cc   *grpc.ClientConn
		size int
		want codes.Code
	}{
		{"default: 32 KiB of metadata", cc, 32 << 10, codes.OK},
		{"default: 128 KiB of metadata", cc, 128 << 10, codes.Internal},
		{"256 KiB limit: 128 KiB of metadata", bigCC, 128 << 10, codes.OK},
		{"256 KiB limit: 512 KiB of metadata", bigCC, 512 << 10, codes.Internal},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		ctx = metadata.AppendToOutgoingContext(ctx, "x-big", strings.Repeat("b", tc.size))
		err := tc.cc.Invoke(ctx, "/svckit.test.Test/Sleep", durationpb.New(0), new(emptypb.Empty), grpc.WaitForReady(true))
		cancel()
		if have := status.Code(err); have != tc.want {
			t.Errorf("%s: have %v, want %v", tc.name, err, tc.want)
		} else if err != nil {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}
