// Command testserver is a service on framework.App with the test service,
// built and run as a child process by the framework's tests.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/internal/testsvc"
)

func main() {
	cfg, err := framework.ParseConfig(os.Args[1:], nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testserver:", err)
		os.Exit(2)
	}
	delay, _ := time.ParseDuration(os.Getenv("TESTSERVER_PROPAGATION_DELAY"))
	if delay == 0 {
		delay = 300 * time.Millisecond
	}
	regTimeout, _ := time.ParseDuration(os.Getenv("TESTSERVER_REGISTER_TIMEOUT"))
	if regTimeout == 0 {
		regTimeout = 10 * time.Second
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	app, err := framework.New("testsvc",
		framework.WithConfig(cfg),
		framework.WithLogger(log),
		framework.WithVersion("test"),
		framework.WithPropagationDelay(delay),
		framework.WithRegisterTimeout(regTimeout))
	if err != nil {
		fmt.Fprintln(os.Stderr, "testserver:", err)
		os.Exit(2)
	}
	testsvc.Register(app.GRPC())
	if err := app.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "testserver:", err)
		os.Exit(1)
	}
}
