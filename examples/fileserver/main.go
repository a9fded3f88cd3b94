package fileserver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/observe"
	"github.com/svckit/svckit/framework/serve"
)

// Main is the fileserver command: the standard svckit flags (see
// docs/configuration.md) plus --root, --max-file-size and --version. It
// serves until SIGINT or SIGTERM and returns nil after a clean stop. -h
// prints the usage to stdout and returns nil; a bad command line returns a
// *cli.UsageError of one line. The fileserver binary and `svckit
// demo`'s instances both run it.
func Main(args []string, version string) error {
	cfg := framework.DefaultConfig()
	if err := cfg.ApplyEnv(nil); err != nil {
		return err
	}
	fs := flag.NewFlagSet("fileserver", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	root := fs.String("root", "", "directory to serve (required)")
	maxSize := fs.Int64("max-file-size", 1<<30, "largest file accepted, in bytes")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := cli.Parse(fs, args, os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *showVersion {
		fmt.Println("fileserver", version)
		return nil
	}
	if fs.NArg() > 0 {
		return &cli.UsageError{Cmd: fs.Name(), Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *root == "" {
		return &cli.UsageError{Cmd: fs.Name(), Err: errors.New("--root is required")}
	}
	if *maxSize <= 0 {
		return &cli.UsageError{Cmd: fs.Name(), Err: fmt.Errorf("--max-file-size %d: must be positive", *maxSize)}
	}
	ctx := context.Background()
	tr, err := observe.NewTracing(ctx, "fileserver")
	if err != nil {
		return err
	}
	defer tr.Shutdown(context.Background())

	svc, err := NewDirService(*root, *maxSize)
	if pe := (*os.PathError)(nil); errors.As(err, &pe) {
		return fmt.Errorf("--root %s: %w", *root, pe.Err) // one line, no prefix twice
	} else if err != nil {
		return fmt.Errorf("--root: %w", err)
	}
	defer svc.Close()
	app, err := NewApp(svc,
		framework.WithConfig(cfg),
		framework.WithMetadata(naming.Metadata{Version: version}),
		framework.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))),
		framework.WithTracerProvider(tr.TracerProvider()))
	if err != nil {
		return err
	}
	return app.Run(ctx)
}

// Limits returns the App's limits for FileSrv: the default ones, but
// requests of at most a chunk and its envelope.
func Limits() serve.Limits {
	l := serve.DefaultLimits()
	l.MaxRecvMsgSize = MaxChunk + 64<<10
	return l
}

// NewApp returns the App of a FileSrv instance over svc: its limits (see
// Limits) and flow-control windows, then
// opts, with the service registered on it. Main runs one; tests and
// benchmarks run several in one process.
func NewApp(svc Service, opts ...framework.Option) (*framework.App, error) {
	app, err := framework.New("fileserver", append([]framework.Option{
		framework.WithLimits(Limits()),
		framework.WithServerOption(ServerWindows()...),
	}, opts...)...)
	if err != nil {
		return nil, err
	}
	Register(app.GRPC(), svc, MakeEndpoints(svc))
	return app, nil
}
