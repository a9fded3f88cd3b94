// Command svckit is the svckit command line: a development etcd, a listing
// of registered instances, a demo of FileSrv under faults, and the
// scaffolding of new services.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/svckit/svckit/examples/fileserver"
	"github.com/svckit/svckit/framework/etcdtest"
)

const usage = `usage: svckit COMMAND [flags]

commands:
  demo    run etcd, three FileSrv instances and a client; stop one, kill one; report
  etcd    run a single-member development etcd (embedded, no install needed)
  gen     regenerate Go code from proto/ of a service (no protoc)
  ls      list registered services and instances
  new     scaffold a service: svckit new NAME [--module PATH] [--dir DIR] [--template DIR] [--force]
  proxy   forward any gRPC call to the registered service that serves it: svckit proxy [--listen ADDR]
  xds     serve the registered services to xDS clients (grpc-go xds:///NAME): svckit xds [--listen ADDR]
`

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "svckit:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "etcd":
		return runEtcd(ctx, args[1:], stdout, stderr)
	case "ls":
		return runLs(ctx, args[1:], stdout, stderr)
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "new":
		return runNew(ctx, args[1:], stdout, stderr)
	case "gen":
		return runGen(ctx, args[1:], stdout)
	case "xds":
		return runXDS(ctx, args[1:], stdout, stderr)
	case "proxy":
		return runProxy(ctx, args[1:], stdout, stderr)
	case demoInstance: // a demo instance, re-executed by runDemo
		return fileserver.Main(args[1:], "demo")
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func runEtcd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("svckit etcd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:2379", "client address to listen on (host:port)")
	dataDir := fs.String("data-dir", "", "data directory (default: a temporary one, removed on exit)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return fmt.Errorf("--listen %q: %w", *listen, err)
	}
	c, err := etcdtest.New(etcdtest.Options{ClientAddr: *listen, Dir: *dataDir})
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(stdout, "etcd serving on %s (Ctrl-C to stop)\n", c.Endpoint(0))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	fmt.Fprintln(stdout, "etcd stopping")
	return nil
}
