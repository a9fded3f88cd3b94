// Command sleeper is the fleet tier's second service: the test service
// (internal/testsvc) on framework.App, registered under the name given by
// FLEET_SERVICE (default "sleeper") with the standard svckit flags.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/testsvc"
)

func main() { cli.Main("sleeper", run) }

func run(args []string) error {
	cfg, err := framework.ParseConfig(args, nil)
	if err != nil {
		return err
	}
	name := os.Getenv("FLEET_SERVICE")
	if name == "" {
		name = "sleeper"
	}
	app, err := framework.New(name,
		framework.WithConfig(cfg),
		framework.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))),
		framework.WithMetadata(naming.Metadata{Version: "fleet"}))
	if err != nil {
		return err
	}
	testsvc.Register(app.GRPC())
	return app.Run(context.Background())
}
