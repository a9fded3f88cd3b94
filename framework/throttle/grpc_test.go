package throttle_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/throttle"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is a real server that sheds every call while shedding is set,
// and counts the calls that reach it.
type backend struct {
	shedding atomic.Bool
	reached  atomic.Int64
}

func (b *backend) serve(t *testing.T) string {
	errShed := status.Error(codes.ResourceExhausted, "shed")
	return testsvc.Serve(t,
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			b.reached.Add(1)
			if b.shedding.Load() {
				return nil, errShed
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			b.reached.Add(1)
			if b.shedding.Load() {
				return errShed
			}
			return nil // ends the stream OK without its (panicking) handler
		}))
}

func dial(t *testing.T, addr string, th *throttle.Throttle) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(th.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(th.StreamClientInterceptor()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestASheddingBackendGetsAFewCallsNotAll(t *testing.T) {
	th, err := throttle.New(throttle.WithWindow(500*time.Millisecond, 5))
	if err != nil {
		t.Fatal(err)
	}
	var b backend
	cc := dial(t, b.serve(t), th)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := testsvc.Sleep(ctx, cc, 0); err != nil {
		t.Fatal(err)
	}

	b.shedding.Store(true)
	before := b.reached.Load()
	var throttled, shed int
	for range 500 {
		err := testsvc.Sleep(ctx, cc, 0)
		switch {
		case errors.Is(err, throttle.ErrThrottled):
			throttled++
		case status.Code(err) == codes.ResourceExhausted:
			shed++
		default:
			t.Fatalf("call: %v", err)
		}
	}
	reached := b.reached.Load() - before
	t.Logf("shedding backend: %d of 500 calls reached it, %d throttled by the client", reached, throttled)
	// The n-th call of a window of failures is sent with probability
	// about (slack+1)/n: about slack × (1 + ln(500/slack)) = 50 of 500.
	if reached != int64(shed) || reached > 100 || throttled != 500-shed {
		t.Fatalf("%d calls reached the backend (%d shed), %d throttled; want at most 100 reached, the rest throttled", reached, shed, throttled)
	}

	// A stream is throttled as it opens, and its shed status is counted
	// when RecvMsg ends it.
	if err := testsvc.PanicStream(ctx, cc); !errors.Is(err, throttle.ErrThrottled) && status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("stream: %v; want throttled or shed", err)
	}

	// The backend is back: calls reach it again within a few windows.
	b.shedding.Store(false)
	took := poll.Until(t, 10*time.Second, "the throttle lets every call through again", func() bool {
		return testsvc.Sleep(ctx, cc, 0) == nil && th.Stats().Probability == 0
	})
	t.Logf("every call let through again %s after the backend recovered", took.Round(time.Millisecond))
	if err := testsvc.PanicStream(ctx, cc); !errors.Is(err, io.EOF) {
		t.Fatalf("stream: %v; want io.EOF, an OK end", err)
	}
}

// Found in review: a stream counted as accepted only when read to its end,
// so a client's long watches (here 30, over the slack of 10) made the
// throttle reject calls to a healthy backend. A stream's first message
// accepts it.
func TestLongStreamsAreAcceptedAtTheirFirstMessage(t *testing.T) {
	th, err := throttle.New()
	if err != nil {
		t.Fatal(err)
	}
	cc := dial(t, testsvc.Serve(t), th)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 30 {
		w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
	}
	if st := th.Stats(); st.Accepts != 30 || st.Probability != 0 {
		t.Fatalf("stats %+v with 30 watches open, each with its first message; want 30 accepts, probability 0", st)
	}
	cancel() // ends the watches
}
