package client_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

// halfFailing fails every other Sleep with Unavailable while on.
type halfFailing struct {
	on    atomic.Bool
	calls atomic.Int64
}

func (h *halfFailing) interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	if info.FullMethod == testsvc.SleepMethod {
		if n := h.calls.Add(1); h.on.Load() && n%2 == 0 {
			return nil, status.Error(codes.Unavailable, "half failing")
		}
	}
	return next(ctx, req)
}

// metric returns the value of the metric name with labels policy, 0 if
// none.
func metric(t *testing.T, reg *prometheus.Registry, name, policy string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "policy" && l.GetValue() == policy {
					v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	return v
}

// One instance of three failing half its calls: with the client's
// default outlier detection it is ejected within 10 s (the interval is
// 2 s), under the default balancer, svckit_random and grpc-go's
// round_robin (inside lb.OutlierDetectionPolicy), and the ejection shows
// in the metrics.
func TestDefaultOutlierDetectionEjectsAHalfFailingInstance(t *testing.T) {
	for _, policy := range []string{lb.P2CEWMA, lb.Random, "round_robin"} {
		t.Run(policy, func(t *testing.T) {
			label := policy // of the metrics
			if policy == "round_robin" {
				label = lb.OutlierDetectionPolicy
			}
			c := etcdtest.Start(t)
			cli := etcdClient(t, c)
			bad := &halfFailing{}
			registerAddr(t, cli, testsvc.Serve(t, grpc.UnaryInterceptor(bad.interceptor)))
			for range 2 {
				registerAddr(t, cli, testsvc.Serve(t))
			}
			reg := prometheus.NewRegistry()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cc, err := newClient(t, c, client.WithMetrics(reg), client.WithBalancer(policy)).Dial(ctx, "testsvc")
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			poll.Until(t, 10*time.Second, "the bad instance called", func() bool {
				_ = testsvc.Sleep(ctx, cc, 0)
				return bad.calls.Load() > 0
			})

			bad.on.Store(true)
			l := startLoad(4, 1_000_000, func() error {
				err := testsvc.Sleep(ctx, cc, time.Millisecond)
				if status.Code(err) == codes.Unavailable {
					return err
				}
				return nil
			})
			took := poll.Until(t, 10*time.Second, "ejection", func() bool { return metric(t, reg, "svckit_lb_ejected", label) == 1 })
			failedBefore, callsBefore := l.failures.Load(), l.calls.Load()
			// Two intervals more while ejected.
			since, ejectedCalls := time.Now(), bad.calls.Load()
			poll.Until(t, 10*time.Second, "4 s of load", func() bool { return time.Since(since) > 4*time.Second })
			l.stop()
			failed, calls := l.failures.Load(), l.calls.Load()
			t.Logf("%s: ejected %s after the failures began (%d of %d calls failed by then, %.2f%%); then %d of %d (%d calls reached it); in all %.2f%%",
				policy, took.Round(time.Millisecond), failedBefore, callsBefore, pct(failedBefore, callsBefore),
				failed-failedBefore, calls-callsBefore, bad.calls.Load()-ejectedCalls, pct(failed, calls))
			if took > 10*time.Second {
				t.Errorf("ejected after %s, want within 10s", took)
			}
			if n := bad.calls.Load() - ejectedCalls; n > 4 {
				t.Errorf("%d calls reached the ejected instance, want ≤ 4 (those in flight)", n)
			}
			if have := metric(t, reg, "svckit_lb_ejections_total", label); have < 1 {
				t.Errorf("svckit_lb_ejections_total %v, want ≥ 1", have)
			}
		})
	}
}

func pct(a, b int64) float64 { return 100 * float64(a) / float64(max(b, 1)) }

// Ejection off: the instance stays in, and the metrics show none.
func TestZeroOutlierDetectionKeepsAFailingInstance(t *testing.T) {
	c := etcdtest.Start(t)
	cli := etcdClient(t, c)
	bad := &halfFailing{}
	bad.on.Store(true)
	registerAddr(t, cli, testsvc.Serve(t, grpc.UnaryInterceptor(bad.interceptor)))
	for range 2 {
		registerAddr(t, cli, testsvc.Serve(t))
	}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	od := lb.DefaultOutlierDetection()
	od.Interval = 100 * time.Millisecond
	cc, err := newClient(t, c, client.WithMetrics(reg), client.WithBalancer(lb.Random), client.WithOutlierDetection(od)).
		Dial(ctx, "testsvc", client.WithOutlierDetection(lb.OutlierDetection{}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for i := range 300 {
		_ = testsvc.Sleep(ctx, cc, 0)
		if have := metric(t, reg, "svckit_lb_ejections_total", lb.Random); have != 0 {
			t.Fatalf("call %d: %v ejections, want 0", i, have)
		}
	}
	if n := bad.calls.Load(); n < 50 {
		t.Errorf("the failing instance got %d of 300 calls, want about 100", n)
	}
}
