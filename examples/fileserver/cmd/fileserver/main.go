// Command fileserver serves FileSrv on framework.App: the standard svckit
// flags (see docs/configuration.md) plus --root and --max-file-size.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/svckit/svckit/examples/fileserver"
	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/observe"
)

// version is stamped at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fileserver:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg := framework.DefaultConfig()
	if err := cfg.ApplyEnv(nil); err != nil {
		return err
	}
	fs := flag.NewFlagSet("fileserver", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	root := fs.String("root", "", "directory to serve (required)")
	maxSize := fs.Int64("max-file-size", 1<<30, "largest file accepted, in bytes")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *showVersion {
		fmt.Println("fileserver", version)
		return nil
	}
	if *root == "" {
		return errors.New("--root is required")
	}
	if *maxSize <= 0 {
		return fmt.Errorf("--max-file-size %d: must be positive", *maxSize)
	}
	ctx := context.Background()
	tr, err := observe.NewTracing(ctx, "fileserver")
	if err != nil {
		return err
	}
	defer tr.Shutdown(context.Background())

	svc, err := fileserver.NewDirService(*root, *maxSize)
	if err != nil {
		return fmt.Errorf("--root: %w", err)
	}
	defer svc.Close()
	app, err := framework.New("fileserver",
		framework.WithConfig(cfg),
		framework.WithVersion(version),
		framework.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))),
		framework.WithTracerProvider(tr.TracerProvider()),
		// Room for a chunk and its envelope.
		framework.WithMaxMsgSize(fileserver.MaxChunk+(64<<10), 4<<20))
	if err != nil {
		return err
	}
	fileserver.Register(app.GRPC(), svc, fileserver.MakeEndpoints(svc))
	return app.Run(ctx)
}
