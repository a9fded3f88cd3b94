package client

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Found in review: attempts shared the caller's call options, so the one
// that lost wrote its trailer (or peer, header) into the caller's after
// the call returned, racing the caller. A call with such options is not
// hedged; others are.
func TestHedgingLeavesCallsThatReadTheirAttemptAlone(t *testing.T) {
	h := newHedger(hedging{delay: time.Millisecond, attempts: 2}, []string{"p.S"}, nil)
	for _, tc := range []struct {
		name string
		opts []grpc.CallOption
		want int64
	}{
		{"no options", nil, 2},
		{"peer", []grpc.CallOption{grpc.Peer(new(peer.Peer))}, 1},
		{"trailer", []grpc.CallOption{grpc.Trailer(nil)}, 1},
		{"header", []grpc.CallOption{grpc.Header(nil)}, 1},
		{"on finish", []grpc.CallOption{grpc.OnFinish(func(error) {})}, 1},
		{"unrelated", []grpc.CallOption{grpc.WaitForReady(true)}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var attempts atomic.Int64
			slow := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
				if attempts.Add(1) == 1 {
					select { // the first attempt is slow: a hedge would win
					case <-time.After(200 * time.Millisecond):
					case <-ctx.Done():
					}
				}
				return nil
			}
			if err := h.unary(context.Background(), "/p.S/M", new(emptypb.Empty), new(emptypb.Empty), nil, slow, tc.opts...); err != nil {
				t.Fatal(err)
			}
			if n := attempts.Load(); n != tc.want {
				t.Errorf("%d attempts, want %d", n, tc.want)
			}
		})
	}
}
