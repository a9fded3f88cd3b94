// Command chaosserver is the test service on framework.App, run as a child
// process by the chaos suite. Variables inject a fault into every call of
// the test service (never into health checks):
//
//	CHAOS_DELAY=50ms         each call waits this long before its handler
//	CHAOS_FAIL=1             each call fails at once with codes.Unavailable
//	CHAOS_FAIL_RATE=0.5      that share of the calls fails at once, at random,
//	CHAOS_FAIL_CODE=INTERNAL with this code (default UNAVAILABLE)
//	CHAOS_CPU=1ms            each call burns this much CPU before its handler
//	CHAOS_CGROUP_ROOT=dir    a simulated cgroup: the App reads its CPU quota
//	                         from dir/sys/fs/cgroup/cpu.max (with
//	                         dir/proc/self/cgroup), and the burns of
//	                         CHAOS_CPU get at most that quota, as the kernel
//	                         would throttle them (see cpu)
//
// CHAOS_PROPAGATION_DELAY sets the App's propagation delay (default 300ms).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/overload"
	"github.com/svckit/svckit/internal/testsvc"
)

func main() { cli.Main("chaosserver", run) }

func run(args []string) error {
	cfg, err := framework.ParseConfig(args, nil)
	if err != nil {
		return err
	}
	propagation, err := envDuration("CHAOS_PROPAGATION_DELAY", 300*time.Millisecond)
	if err != nil {
		return err
	}
	f, err := newFaults()
	if err != nil {
		return err
	}
	var opts []framework.Option
	if root := os.Getenv("CHAOS_CGROUP_ROOT"); root != "" {
		opts = append(opts, framework.WithOverload(overload.WithCgroupRoot(root)))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	app, err := framework.New("chaos", append(opts,
		framework.WithConfig(cfg),
		framework.WithLogger(log),
		framework.WithMetadata(naming.Metadata{Version: "chaos"}),
		framework.WithPropagationDelay(propagation),
		framework.WithUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := f.apply(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		framework.WithStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := f.apply(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}))...)
	if err != nil {
		return err
	}
	testsvc.Register(app.GRPC())
	return app.Run(context.Background())
}

// faults are the faults of the test service's calls, read from CHAOS_*.
type faults struct {
	fail     bool
	failRate float64
	failCode codes.Code
	delay    time.Duration
	cpu      *cpu
}

func newFaults() (*faults, error) {
	delay, err := envDuration("CHAOS_DELAY", 0)
	if err != nil {
		return nil, err
	}
	f := &faults{fail: os.Getenv("CHAOS_FAIL") == "1", delay: delay, failCode: codes.Unavailable}
	if v := os.Getenv("CHAOS_FAIL_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || !(r >= 0 && r <= 1) {
			return nil, fmt.Errorf("CHAOS_FAIL_RATE=%q: want a share from 0 to 1", v)
		}
		f.failRate = r
	}
	if v := os.Getenv("CHAOS_FAIL_CODE"); v != "" {
		if err := f.failCode.UnmarshalJSON([]byte(strconv.Quote(v))); err != nil {
			return nil, fmt.Errorf("CHAOS_FAIL_CODE=%q: %w", v, err)
		}
	}
	cost, err := envDuration("CHAOS_CPU", 0)
	if err != nil {
		return nil, err
	}
	if f.cpu, err = newCPU(cost, os.Getenv("CHAOS_CGROUP_ROOT")); err != nil {
		return nil, fmt.Errorf("CHAOS_CGROUP_ROOT: %w", err)
	}
	return f, nil
}

// apply injects the faults into a call of method: an error fails it.
func (f *faults) apply(ctx context.Context, method string) error {
	if !strings.HasPrefix(method, "/"+testsvc.ServiceName+"/") {
		return nil
	}
	if f.fail || (f.failRate > 0 && rand.Float64() < f.failRate) {
		return status.Error(f.failCode, "chaos: failing on purpose")
	}
	if f.delay > 0 {
		t := time.NewTimer(f.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	if err := f.cpu.run(ctx); err != nil {
		return status.FromContextError(err).Err()
	}
	return nil
}

func envDuration(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 50ms", name, v)
	}
	return d, nil
}
