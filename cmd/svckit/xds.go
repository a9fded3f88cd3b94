package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/xds"
)

const xdsUsage = "usage: svckit xds [--listen ADDR] [--etcd ADDRS] [--etcd-ca F --etcd-cert F --etcd-key F] [--prefix P] [--wrr]"

// runXDS serves svckit's etcd records as xDS until SIGINT or SIGTERM.
func runXDS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := framework.DefaultConfig()
	if err := cfg.ApplyEnv(nil); err != nil {
		return err
	}
	fs := flag.NewFlagSet("svckit xds", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), xdsUsage); fs.PrintDefaults() }
	listen := fs.String("listen", "127.0.0.1:18000", "xDS gRPC address to listen on (host:port)")
	cfg.RegisterEtcdFlags(fs)
	wrr := fs.Bool("wrr", false, "ask clients for ORCA-weighted round robin instead of round robin")
	if err := framework.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &framework.UsageError{Cmd: fs.Name(), Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return fmt.Errorf("--listen %q: %w", *listen, err)
	}
	if err := naming.ValidatePrefix(cfg.Prefix); err != nil {
		return fmt.Errorf("--prefix: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cc, err := cfg.EtcdClientConfig()
	if err != nil {
		return err
	}
	cc.DialTimeout, cc.Logger = 3*time.Second, log
	cli, err := naming.NewClient(cc)
	if err != nil {
		return err
	}
	defer cli.Close()
	// etcd may come up after svckit xds (or be down while it restarts): it
	// then serves nothing until etcd answers, and clients keep what they
	// have.
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = naming.Ping(pctx, cli)
	cancel()
	if err != nil {
		log.Warn("etcd not answering; serving nothing until it does", "err", err)
	}
	opts := []xds.Option{xds.WithPrefix(cfg.Prefix), xds.WithLogger(log)}
	if *wrr {
		opts = append(opts, xds.WithWeightedRoundRobin())
	}
	xs, err := xds.New(naming.NewBuilder(cli, naming.WithResolverLogger(log)), opts...)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "svckit xds: serving on %s (etcd %s, prefix %s)\n", lis.Addr(), strings.Join(cfg.Etcd, ","), cfg.Prefix)
	return xs.Serve(ctx, lis)
}
