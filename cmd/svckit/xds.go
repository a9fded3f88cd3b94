package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/xds"
)

const xdsUsage = "usage: svckit xds [--listen ADDR] [--etcd ADDRS] [--etcd-ca F --etcd-cert F --etcd-key F] [--prefix P] [--wrr] [--eject=false]"

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
	eject := fs.Bool("eject", true, "ask clients to eject instances that fail 85 % of their calls (gRFC A50 outlier detection, xds.DefaultOutlierDetection)")
	if err := cli.Parse(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &cli.UsageError{Cmd: fs.Name(), Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
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
	// etcd may come up after svckit xds (or be down while it restarts): it
	// then serves nothing until etcd answers, and clients keep what they
	// have. A refusal that waiting cannot fix ends it instead.
	cli, err := dialEtcd(ctx, cc, log)
	if err != nil {
		return fmt.Errorf("xds: %w", err)
	}
	defer cli.Close()
	if err := checkEtcd(ctx, cli, cfg.Prefix); err != nil {
		if lasting(err) {
			return fmt.Errorf("xds: %w", err)
		}
		log.Warn("etcd not answering; serving nothing until it does", "err", err)
	}
	opts := []xds.Option{xds.WithPrefix(cfg.Prefix), xds.WithLogger(log)}
	if *wrr {
		opts = append(opts, xds.WithWeightedRoundRobin())
	}
	if !*eject {
		opts = append(opts, xds.WithoutOutlierDetection())
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

// dialEtcd returns a client of etcd. With a password the etcd client
// authenticates at once, so while etcd does not answer it tries again
// (logging why) until etcd answers or ctx ends; a lasting refusal is
// returned at once.
func dialEtcd(ctx context.Context, cc naming.ClientConfig, log *slog.Logger) (*clientv3.Client, error) {
	for attempt := 0; ; attempt++ {
		cli, err := naming.NewClient(cc)
		if err == nil {
			return cli, nil
		}
		if lasting(err) {
			return nil, err
		}
		if cc.Password != "" {
			// Authentication timed out: a ping without credentials names
			// a refused TLS handshake.
			if why := pingAnonymous(ctx, cc); lasting(why) {
				return nil, why
			}
		}
		if attempt%10 == 0 {
			log.Warn("etcd not answering; waiting for it before serving", "err", err, "attempt", attempt+1)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(time.Duration(attempt+1)*time.Second, 5*time.Second)):
		}
	}
}

// pingAnonymous pings etcd with cc but no user, within 3s.
func pingAnonymous(ctx context.Context, cc naming.ClientConfig) error {
	cc.Username, cc.Password = "", ""
	cli, err := naming.NewClient(cc)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return naming.Ping(ctx, cli)
}

// checkEtcd checks, within 5s, that etcd answers and lets cli read the
// prefix.
func checkEtcd(ctx context.Context, cli *clientv3.Client, prefix string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Ping names a refused TLS handshake or the last connection error, and
	// counts a denied read as an answer: the read of the prefix tells.
	if err := naming.Ping(ctx, cli); err != nil {
		return err
	}
	if _, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("etcd %v: read %s: %w", cli.Endpoints(), prefix, err)
	}
	return nil
}

// tlsRefusals are the parts of the errors of a TLS handshake that fails
// the same way every time: a certificate not verified or refused, or a
// plaintext client of a TLS server. gRPC reports a failed handshake only
// as text. A handshake cut short (EOF, reset) is not one of them.
func tlsRefusals() []string {
	return []string{"x509:", "tls: bad certificate", "tls: unknown certificate", "tls: certificate required",
		"tls: failed to verify", "first record does not look like a TLS handshake"}
}

// lastingEtcd are etcd's refusals that waiting does not fix. Not among
// them: rpctypes.ErrAuthOldRevision (the auth store changed under a token;
// the client authenticates again) and rpctypes.ErrInvalidAuthToken.
func lastingEtcd() []error {
	return []error{rpctypes.ErrAuthFailed, rpctypes.ErrPermissionDenied, rpctypes.ErrUserNotFound,
		rpctypes.ErrUserEmpty, rpctypes.ErrAuthNotEnabled}
}

// lasting reports whether err is a refusal by etcd that waiting does not
// fix: a wrong or missing user or password, a permission denied, TLS
// settings that do not fit etcd's (naming.ErrTLS) or a failed TLS
// verification. Anything else (no answer, unavailable, an old auth
// revision) may pass.
func lasting(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, naming.ErrTLS) {
		return true
	}
	// etcd's client converts its gRPC errors to rpctypes errors; Ping
	// returns them as gRPC status errors.
	etcdErr := err
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		etcdErr = rpctypes.Error(se.GRPCStatus().Err())
	}
	for _, e := range lastingEtcd() {
		if errors.Is(err, e) || errors.Is(etcdErr, e) {
			return true
		}
	}
	if status.Code(err) == codes.PermissionDenied {
		return true
	}
	msg := err.Error()
	for _, s := range tlsRefusals() {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
