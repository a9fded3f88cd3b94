package framework_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/overload"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

// startOverloadApp runs an App whose handlers can serve two calls at a
// time (a semaphore the user's interceptor holds around testsvc's Sleep),
// with the options given; it returns the App and the count of Sleeps handled.
func startOverloadApp(t *testing.T, cfg framework.Config, opts ...framework.Option) (*framework.App, *atomic.Int64) {
	t.Helper()
	sem := make(chan struct{}, 2)
	var handled atomic.Int64
	cfg.Admin = "127.0.0.1:0"
	opts = append([]framework.Option{framework.WithConfig(cfg), framework.WithoutSignals(), framework.WithPropagationDelay(0),
		framework.WithLogger(slog.New(slog.DiscardHandler)),
		framework.WithRegistrar(func(naming.Instance) (framework.Registrar, error) {
			return &staticRegistrar{done: make(chan struct{})}, nil
		}),
		framework.WithUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if info.FullMethod != testsvc.SleepMethod {
				return h(ctx, req)
			}
			sem <- struct{}{}
			defer func() { <-sem }()
			handled.Add(1)
			return h(ctx, req)
		})}, opts...)
	app, err := framework.New("busy", opts...)
	if err != nil {
		t.Fatal(err)
	}
	testsvc.Register(app.GRPC())
	ctx, cancel := context.WithCancel(context.Background())
	done := runUntilStarted(ctx, t, app)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return app, &handled
}

// An App offered eight times what it can serve sheds the excess at once
// with RESOURCE_EXHAUSTED, before its handlers (and the user's
// interceptors) run, answers every health check meanwhile, and exports the
// limit and the calls shed.
func TestOverloadedAppShedsTheExcess(t *testing.T) {
	app, handled := startOverloadApp(t, framework.DefaultConfig(),
		// Busy whatever the machine does, and two cores whatever it has:
		// the capacity is the semaphore.
		framework.WithOverload(overload.WithCPUThreshold(1e-9), overload.WithCgroupRoot(twoCores(t))))
	cc, err := grpc.NewClient(app.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	var ok, shed, other atomic.Int64
	var otherErr atomic.Value
	l := startLoad(16, 2000, 0, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := testsvc.Sleep(ctx, cc, 10*time.Millisecond)
		switch status.Code(err) {
		case codes.OK:
			ok.Add(1)
		case codes.ResourceExhausted:
			shed.Add(1)
		default:
			other.Add(1)
			otherErr.CompareAndSwap(nil, err.Error())
		}
		return err
	})
	var checks, badChecks atomic.Int64
	hl := startLoad(1, 1000, 10*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		checks.Add(1)
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			badChecks.Add(1)
		}
		return err
	})
	poll.Until(t, 30*time.Second, "200 calls served and 200 shed", func() bool { return ok.Load() >= 200 && shed.Load() >= 200 })
	l.stop()
	hl.stop()

	t.Logf("served %d, shed %d, health checks %d", ok.Load(), shed.Load(), checks.Load())
	if n := other.Load(); n > 0 {
		t.Errorf("%d calls failed otherwise than shed, first: %v", n, otherErr.Load())
	}
	if n := badChecks.Load(); n > 0 {
		t.Errorf("%d of %d health checks failed: health checks are never shed", n, checks.Load())
	}
	if h, o := handled.Load(), ok.Load(); h != o {
		t.Errorf("the handlers ran %d times for %d calls served: a shed call must not reach them", h, o)
	}
	metrics := httpBody(t, "http://"+app.AdminAddr()+"/metrics")
	if have := metricValue(t, metrics, "svckit_overload_shed_total"); have != float64(shed.Load()) {
		t.Errorf("svckit_overload_shed_total %v, want %d, the calls the client saw shed", have, shed.Load())
	}
	if have := metricValue(t, metrics, "svckit_overload_limit"); have < 2 || have > 8 {
		t.Errorf("svckit_overload_limit %v, want about 2, what the handlers can serve at once", have)
	}
	for _, m := range []string{"svckit_overload_in_flight", "svckit_overload_cpu_utilization"} {
		metricValue(t, metrics, m)
	}
}

// --overload-cpu 0 turns shedding off: the same overload queues, and no
// overload metric is exported.
func TestOverloadCPUZeroNeverSheds(t *testing.T) {
	cfg := framework.DefaultConfig()
	cfg.OverloadCPU = 0
	app, _ := startOverloadApp(t, cfg, framework.WithOverload(overload.WithCPUThreshold(1e-9)))
	cc, err := grpc.NewClient(app.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	l := startLoad(16, 30, 0, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return testsvc.Sleep(ctx, cc, time.Millisecond)
	})
	l.wg.Wait()
	if n := l.failures.Load(); n > 0 {
		t.Errorf("%d of %d calls failed, first: %v; want none without shedding", n, l.calls.Load(), l.firstErr.Load())
	}
	if metrics := httpBody(t, "http://"+app.AdminAddr()+"/metrics"); strings.Contains(metrics, "svckit_overload_") {
		t.Error("/metrics has svckit_overload_ metrics with shedding off")
	}
}

// twoCores returns a root for overload.WithCgroupRoot under which the
// process's cgroup v2 quota is two cores.
func twoCores(t *testing.T) string {
	root := t.TempDir()
	for name, body := range map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "200000 100000\n"} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// metricValue returns the value of the unlabelled metric name in a
// /metrics body.
func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics: %s %q: %v", name, v, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics: no %s", name)
	return 0
}

// A gRPC server takes one tap handle, and load shedding sets one: an App
// given another fails in New with an error that says what to do, not a
// panic; with shedding off, it takes the user's.
func TestATapOfYourOwnNeedsSheddingOff(t *testing.T) {
	tap := grpc.InTapHandle(func(ctx context.Context, _ *tap.Info) (context.Context, error) { return ctx, nil })
	cfg := framework.DefaultConfig()
	_, err := framework.New("tapped", framework.WithConfig(cfg), framework.WithoutSignals(), framework.WithServerOption(tap))
	if err == nil || !strings.Contains(err.Error(), "--overload-cpu 0") {
		t.Fatalf("New with a tap of its own: %v; want an error naming --overload-cpu 0", err)
	}
	cfg.OverloadCPU = 0
	if _, err := framework.New("tapped", framework.WithConfig(cfg), framework.WithoutSignals(), framework.WithServerOption(tap)); err != nil {
		t.Fatalf("New with a tap of its own and shedding off: %v", err)
	}
}
