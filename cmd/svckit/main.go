// Command svckit is the svckit command line: a development etcd, a listing
// of registered instances, a demo of FileSrv under faults, and the
// scaffolding of new services.
//
// It links the example service, examples/fileserver, only because `svckit
// demo` runs FileSrv instances as child processes of the svckit binary
// itself and calls them with FileSrv's client.
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
	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/framework/etcdtest"
)

const usage = `usage: svckit COMMAND [flags]

commands:
  demo    run etcd, three FileSrv instances and a client; stop one, kill one; report
  etcd    run a single-member development etcd (embedded, no install needed): svckit etcd [--listen ADDR] [--tls]
  gen     regenerate Go code from proto/ of a service (no protoc)
  ls      list registered services and instances
  new     scaffold a service: svckit new NAME [--module PATH] [--dir DIR] [--template DIR] [--force]
  proxy   forward any gRPC call to the registered service that serves it: svckit proxy [--listen ADDR]
  xds     serve the registered services to xDS clients (grpc-go xds:///NAME): svckit xds [--listen ADDR]
`

func main() {
	cli.Main("svckit", func(args []string) error { return run(context.Background(), args, os.Stdout, os.Stderr) })
}

// run runs the command in args. A bad command line is a
// *cli.UsageError of one line; -h prints the usage and returns nil.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // cli.Parse printed the usage
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &cli.UsageError{Cmd: "svckit", Err: errors.New("no command given")}
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
		return &cli.UsageError{Cmd: "svckit", Err: fmt.Errorf("unknown command %q", args[0])}
	}
}

// runEtcd serves a single-member development etcd until SIGINT or
// SIGTERM; with --tls, over TLS only with client certificates required,
// and certificates generated into --tls-dir.
func runEtcd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("svckit etcd", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:2379", "client address to listen on (host:port)")
	dataDir := fs.String("data-dir", "", "data directory (default: a temporary one, removed on exit)")
	useTLS := fs.Bool("tls", false, "serve TLS only and require client certificates, with certificates generated into --tls-dir")
	tlsDir := fs.String("tls-dir", "", "directory for the generated CA, server and client certificates (default: a temporary one, removed on exit); new ones at every start")
	if err := cli.Parse(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &cli.UsageError{Cmd: fs.Name(), Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return &cli.UsageError{Cmd: fs.Name(), Err: fmt.Errorf("--listen %q: %w", *listen, err)}
	}
	if *tlsDir != "" && !*useTLS {
		return &cli.UsageError{Cmd: fs.Name(), Err: errors.New("--tls-dir needs --tls")}
	}
	opts := etcdtest.Options{ClientAddr: *listen, Dir: *dataDir}
	var certs etcdtest.Certs
	if *useTLS {
		dir := *tlsDir
		if dir == "" {
			d, err := os.MkdirTemp("", "svckit-etcd-tls-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(d)
			dir = d
		}
		var err error
		if certs, err = etcdtest.GenerateCerts(dir); err != nil {
			return err
		}
		if opts.TLS, err = certs.ServerTLS(true); err != nil {
			return err
		}
	}
	c, err := etcdtest.New(opts)
	if err != nil {
		return err
	}
	defer c.Close()
	if *useTLS {
		u := c.URLs()[0]
		fmt.Fprintf(stdout, "etcd serving on %s, TLS only, client certificates required (Ctrl-C to stop)\n", u)
		fmt.Fprintf(stdout, "certificates in %s (CA, server, client; valid 90 days)\n", certs.Dir)
		fmt.Fprintf(stdout, "flags: --etcd %s --etcd-ca %s --etcd-cert %s --etcd-key %s\n", u, certs.CA, certs.ClientCert, certs.ClientKey)
		fmt.Fprintf(stdout, "env:   export SVCKIT_ETCD_ENDPOINTS=%s SVCKIT_ETCD_CA=%s SVCKIT_ETCD_CERT=%s SVCKIT_ETCD_KEY=%s\n", u, certs.CA, certs.ClientCert, certs.ClientKey)
	} else {
		fmt.Fprintf(stdout, "etcd serving on %s (Ctrl-C to stop)\n", c.Endpoint(0))
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	fmt.Fprintln(stdout, "etcd stopping")
	return nil
}
