package chaos

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"

	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

// attemptTimes is a stats.Handler that keeps the time of every attempt
// sent to one address.
type attemptTimes struct {
	addr string
	mu   sync.Mutex
	at   []time.Time
}

func (a *attemptTimes) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (a *attemptTimes) HandleRPC(_ context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.OutHeader); ok && h.Client && h.RemoteAddr != nil && h.RemoteAddr.String() == a.addr {
		a.mu.Lock()
		a.at = append(a.at, time.Now())
		a.mu.Unlock()
	}
}
func (a *attemptTimes) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (a *attemptTimes) HandleConn(context.Context, stats.ConnStats) {}

// firstGap returns when, after start, the first gap of at least d between
// two attempts (or the last attempt and end) began; false if none did.
func (a *attemptTimes) firstGap(start, end time.Time, d time.Duration) (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := start
	for _, at := range append(a.at, end) {
		if at.Before(start) {
			continue
		}
		if at.Sub(prev) >= d {
			return prev.Sub(start), true
		}
		prev = at
	}
	return 0, false
}

// One instance of three failing half of its calls with INTERNAL (not
// retried): the clients eject it within 10s — no attempt reaches it for
// 3s, where svckit_p2c_ewma alone still tries it about once a second per
// conn (its forced pick) — and callers see at most 1 % errors.
func TestHalfFailingInstance(t *testing.T) {
	leakCheck(t)
	c := etcdtest.Start(t)
	ep := c.Endpoint(0)
	startServers(t, 2, ep)
	bad := startServer(t, ep, "CHAOS_FAIL_RATE=0.5", "CHAOS_FAIL_CODE=INTERNAL")
	times := &attemptTimes{addr: bad.addr}
	var conns []*conn
	for range 2 {
		cl := dial(t, lb.P2CEWMA, etcdAt(ep), client.WithGRPCOption(grpc.WithStatsHandler(times)))
		cl.waitEndpoints(t, 3, 10*time.Second)
		conns = append(conns, cl)
	}
	const rps, run = 200.0, 20 * time.Second
	l := startPaced(4, rps, 10_000, 5*time.Second, func(ctx context.Context, w int) error {
		return testsvc.Sleep(ctx, conns[w%2], 0)
	})
	t.Cleanup(func() { l.stop() })
	start := time.Now()
	poll.Until(t, 2*run, "the run", func() bool { return time.Since(start) > run })
	outs := l.stop()
	ejected, ok := times.firstGap(start, time.Now(), 3*time.Second)
	n := tally(outs)
	failed := len(outs) - n[codes.OK]

	when := "never"
	if ok {
		when = fmt.Sprintf("%s after the load began", ejected.Round(10*time.Millisecond))
	}
	figure(t, "half-failing instance ejected (no attempt for 3s)", fmt.Sprintf("%s; %d attempts reached it in %s", when, len(times.at), run), "≤ 10s")
	figure(t, "errors seen by callers", fmt.Sprintf("%d of %d (%.2f %%)", failed, len(outs), 100*float64(failed)/float64(len(outs))), "≤ 1 %")
	if !ok || ejected > 10*time.Second {
		t.Errorf("half-failing instance not ejected within 10s: %s", when)
	}
	if failed*100 > len(outs) {
		t.Errorf("%d of %d calls failed: %v", failed, len(outs), n)
	}
}
