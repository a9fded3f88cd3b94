// Command testserver is a service on framework.App with the test service,
// built and run as a child process by the framework's tests.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"google.golang.org/grpc"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/testsvc"
)

func main() { cli.Main("testserver", run) }

func run(args []string) error {
	cfg, err := framework.ParseConfig(args, nil)
	if err != nil {
		return err
	}
	delay, _ := time.ParseDuration(os.Getenv("TESTSERVER_PROPAGATION_DELAY"))
	if delay == 0 {
		delay = 300 * time.Millisecond
	}
	regTimeout, _ := time.ParseDuration(os.Getenv("TESTSERVER_REGISTER_TIMEOUT"))
	if regTimeout == 0 {
		regTimeout = 10 * time.Second
	}
	var extra []framework.Option
	if os.Getenv("TESTSERVER_ORCA") == "1" {
		extra = append(extra, framework.WithORCA())
	}
	// TESTSERVER_BURN=2ms spends that much CPU in every call: a server
	// that is more loaded than its peers for the same traffic.
	if burn, _ := time.ParseDuration(os.Getenv("TESTSERVER_BURN")); burn > 0 {
		extra = append(extra, framework.WithUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			for end := time.Now().Add(burn); time.Now().Before(end); {
			}
			return h(ctx, req)
		}))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	app, err := framework.New("testsvc", append([]framework.Option{
		framework.WithConfig(cfg),
		framework.WithLogger(log),
		framework.WithMetadata(naming.Metadata{Version: "test"}),
		framework.WithPropagationDelay(delay),
		framework.WithRegisterTimeout(regTimeout)}, extra...)...)
	if err != nil {
		return err
	}
	testsvc.Register(app.GRPC())
	// TESTSERVER_STUCK_ACTOR=1 adds an actor that never stops, as one
	// blocked on a dead peer would.
	if os.Getenv("TESTSERVER_STUCK_ACTOR") == "1" {
		never := make(chan struct{})
		app.Add("stuck", func() error { <-never; return nil }, func(error) { <-never })
	}
	return app.Run(context.Background())
}
