// Command chaosserver is the test service on framework.App, run as a child
// process by the chaos suite. Two variables inject a fault into every call
// of the test service (never into health checks):
//
//	CHAOS_DELAY=50ms      each call waits this long before its handler
//	CHAOS_FAIL=1          each call fails at once with codes.Unavailable
//
// CHAOS_PROPAGATION_DELAY sets the App's propagation delay (default 300ms).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/testsvc"
)

func main() { cli.Main("chaosserver", run) }

func run(args []string) error {
	cfg, err := framework.ParseConfig(args, nil)
	if err != nil {
		return err
	}
	delay, err := envDuration("CHAOS_DELAY", 0)
	if err != nil {
		return err
	}
	propagation, err := envDuration("CHAOS_PROPAGATION_DELAY", 300*time.Millisecond)
	if err != nil {
		return err
	}
	fail := os.Getenv("CHAOS_FAIL") == "1"
	fault := func(ctx context.Context, method string) error {
		if !strings.HasPrefix(method, "/"+testsvc.ServiceName+"/") {
			return nil
		}
		if fail {
			return status.Error(codes.Unavailable, "chaos: failing on purpose")
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
		return nil
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	app, err := framework.New("chaos",
		framework.WithConfig(cfg),
		framework.WithLogger(log),
		framework.WithMetadata(naming.Metadata{Version: "chaos"}),
		framework.WithPropagationDelay(propagation),
		framework.WithUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := fault(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		framework.WithStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := fault(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}))
	if err != nil {
		return err
	}
	testsvc.Register(app.GRPC())
	return app.Run(context.Background())
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
