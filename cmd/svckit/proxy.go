package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/proxy"
)

const proxyUsage = "usage: svckit proxy [--listen ADDR] [--etcd ADDRS] [--etcd-ca F --etcd-cert F --etcd-key F] [--prefix P] [flags]"

// runProxy serves the registered services through one gRPC address until
// SIGINT or SIGTERM, then stops gracefully.
func runProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := framework.DefaultConfig()
	if err := cfg.ApplyEnv(nil); err != nil {
		return err
	}
	fs := flag.NewFlagSet("svckit proxy", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), proxyUsage); fs.PrintDefaults() }
	listen := fs.String("listen", "127.0.0.1:8443", "address to serve gRPC clients on (host:port)")
	cfg.RegisterEtcdFlags(fs)
	maxMsg := fs.Int("max-msg-size", 4<<20, "largest message forwarded either way, in bytes")
	maxStreams := fs.Uint("max-streams", 1000, "calls in flight per client connection")
	maxHeader := fs.Uint("max-header-bytes", 64<<10, "largest header list (method name and metadata, uncompressed) a client may send per call, in bytes")
	maxBackends := fs.Int("max-backends", 256, "backend connections cached, one per service")
	shutdown := fs.Duration("shutdown-timeout", cfg.ShutdownTimeout, "bound on the graceful stop (env SVCKIT_SHUTDOWN_TIMEOUT)")
	policy := fs.String("balancer", lb.P2CEWMA, "load-balancing policy for the backends (a registered name: "+lb.P2CEWMA+", "+lb.WeightedRoundRobin+", "+lb.Random+", "+lb.ConsistentHash+", round_robin)")
	tlsCert := fs.String("tls-cert", cfg.TLSCert, "proxy TLS certificate, PEM (with --tls-key: clients must use TLS; env SVCKIT_TLS_CERT)")
	tlsKey := fs.String("tls-key", cfg.TLSKey, "proxy TLS private key, PEM (env SVCKIT_TLS_KEY)")
	tlsCA := fs.String("tls-ca", cfg.TLSCA, "CA that client certificates must chain to, PEM: mutual TLS (env SVCKIT_TLS_CA)")
	backendCA := fs.String("backend-ca", "", "CA that backend certificates must chain to, PEM: TLS to the backends")
	backendCert := fs.String("backend-cert", "", "client certificate for the backends, PEM (mutual TLS)")
	backendKey := fs.String("backend-key", "", "client key for the backends, PEM")
	if err := framework.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &framework.UsageError{Cmd: fs.Name(), Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return fmt.Errorf("proxy: --listen %q: %w", *listen, err)
	}
	if *maxStreams == 0 || *maxStreams > 1<<31 {
		return fmt.Errorf("proxy: --max-streams %d: want 1 to 2147483648", *maxStreams)
	}
	if *maxHeader == 0 || *maxHeader > math.MaxUint32 {
		return fmt.Errorf("proxy: --max-header-bytes %d: want 1 to %d", *maxHeader, uint64(math.MaxUint32))
	}
	if (*tlsCert == "") != (*tlsKey == "") || (*tlsCA != "" && *tlsCert == "") {
		return errors.New("proxy: --tls-cert and --tls-key go together, and --tls-ca needs both")
	}
	if *backendCA == "" && (*backendCert != "" || *backendKey != "") {
		return errors.New("proxy: --backend-cert and --backend-key need --backend-ca")
	}
	lbName, deprecated := lb.Canonical(*policy)
	if balancer.Get(lbName) == nil {
		return fmt.Errorf("proxy: --balancer %q: no load-balancing policy of that name is registered", *policy)
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	if deprecated {
		log.Warn("deprecated --balancer name", "balancer", *policy, "use", lbName)
	}
	opts := []proxy.Option{
		proxy.WithPrefix(cfg.Prefix),
		proxy.WithLogger(log),
		proxy.WithMaxMsgSize(*maxMsg),
		proxy.WithMaxConcurrentStreams(uint32(*maxStreams)),
		proxy.WithMaxHeaderListSize(uint32(*maxHeader)),
		proxy.WithMaxBackends(*maxBackends),
		proxy.WithShutdownTimeout(*shutdown),
		proxy.WithDialOptions(framework.WithBalancer(lbName)),
	}
	if *tlsCert != "" {
		creds, err := framework.ServerTLS(*tlsCert, *tlsKey, *tlsCA)
		if err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
		opts = append(opts, proxy.WithServerOption(grpc.Creds(creds)))
	}
	if *backendCA != "" {
		creds, err := framework.ClientTLS(*backendCA, *backendCert, *backendKey, "")
		if err != nil {
			return fmt.Errorf("proxy: --backend-ca: %w", err)
		}
		opts = append(opts, proxy.WithDialOptions(framework.WithTransportCredentials(creds)))
	}
	cc, err := cfg.EtcdClientConfig()
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	cc.DialTimeout, cc.Logger = 3*time.Second, log
	cli, err := naming.NewClient(cc)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	defer cli.Close()
	// proxy.New validates the options before any network use.
	p, err := proxy.New(cli, opts...)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = naming.Ping(pctx, cli)
	cancel()
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("proxy: --listen: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Once stopping, a second signal ends the process at once.
	go func() { <-ctx.Done(); stop() }()
	fmt.Fprintf(stdout, "svckit proxy: serving on %s (etcd %s, prefix %s)\n", lis.Addr(), strings.Join(cfg.Etcd, ","), cfg.Prefix)
	return p.Serve(ctx, lis)
}
