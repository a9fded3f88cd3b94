// Command greeter serves the greeter service on framework.App, with the
// standard svckit flags and --version.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	greeter "example.com/greeter"
	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/observe"
)

// version is stamped at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

// main exits 2 after a bad command line, printed on one line, 0 after -h,
// and 1 after any other error (cli.Main).
func main() { cli.Main("greeter", run) }

func run(args []string) error {
	cfg := framework.DefaultConfig()
	if err := cfg.ApplyEnv(nil); err != nil {
		return err
	}
	fs := flag.NewFlagSet("greeter", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := cli.Parse(fs, args, os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return &cli.UsageError{Cmd: fs.Name(), Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *showVersion {
		fmt.Println("greeter", version)
		return nil
	}
	ctx := context.Background()
	tr, err := observe.NewTracing(ctx, "greeter")
	if err != nil {
		return err
	}
	defer tr.Shutdown(context.Background())
	app, err := framework.New("greeter",
		framework.WithConfig(cfg),
		framework.WithMetadata(naming.Metadata{Version: version}),
		framework.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))),
		framework.WithTracerProvider(tr.TracerProvider()))
	if err != nil {
		return err
	}
	greeter.Register(app.GRPC(), greeter.MakeEndpoints(greeter.New()))
	return app.Run(ctx)
}
