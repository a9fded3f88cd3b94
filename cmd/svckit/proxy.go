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

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/proxy"
	"github.com/svckit/svckit/framework/serve"
)

const proxyUsage = "usage: svckit proxy [--listen ADDR] [--etcd ADDRS] [--etcd-ca F --etcd-cert F --etcd-key F] [--prefix P] [flags]"

// proxyFlags are the settings of svckit proxy.
type proxyFlags struct {
	cfg                                framework.Config
	listen, policy                     string
	maxMsg, maxBackends                int
	maxStreams, maxHeader              uint
	shutdown                           time.Duration
	tlsCert, tlsKey, tlsCA             string
	backendCA, backendCert, backendKey string
}

// runProxy serves the registered services through one gRPC address until
// SIGINT or SIGTERM, then stops gracefully.
func runProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseProxyFlags(args, stdout)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	opts, err := f.options(log)
	if err != nil {
		return err
	}
	cli, err := f.etcdClient(log)
	if err != nil {
		return err
	}
	defer cli.Close()
	// proxy.New validates the options before any network use.
	p, err := proxy.New(cli, opts...)
	if err != nil {
		return err
	}
	// As svckit xds: etcd answers and lets the user read the prefix, or a
	// one-line refusal, rather than a proxy that never turns SERVING.
	if err := checkEtcd(ctx, cli, f.cfg.Prefix); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("proxy: --listen: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Once stopping, a second signal ends the process at once.
	go func() { <-ctx.Done(); stop() }()
	fmt.Fprintf(stdout, "svckit proxy: serving on %s (etcd %s, prefix %s)\n", lis.Addr(), strings.Join(f.cfg.Etcd, ","), f.cfg.Prefix)
	return p.Serve(ctx, lis)
}

// parseProxyFlags reads the environment, then args, and checks them.
func parseProxyFlags(args []string, stdout io.Writer) (proxyFlags, error) {
	f := proxyFlags{cfg: framework.DefaultConfig()}
	if err := f.cfg.ApplyEnv(nil); err != nil {
		return f, err
	}
	fs := flag.NewFlagSet("svckit proxy", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), proxyUsage); fs.PrintDefaults() }
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8443", "address to serve gRPC clients on (host:port)")
	f.cfg.RegisterEtcdFlags(fs)
	limits := serve.DefaultLimits()
	fs.IntVar(&f.maxMsg, "max-msg-size", limits.MaxRecvMsgSize, "largest message forwarded either way, in bytes")
	fs.UintVar(&f.maxStreams, "max-streams", uint(limits.MaxConcurrentStreams), "calls in flight per client connection")
	fs.UintVar(&f.maxHeader, "max-header-bytes", 64<<10, "largest header list (method name and metadata, uncompressed) a client may send per call, in bytes")
	fs.IntVar(&f.maxBackends, "max-backends", 256, "backend connections cached, one per service")
	fs.DurationVar(&f.shutdown, "shutdown-timeout", f.cfg.ShutdownTimeout, "bound on the graceful stop (env SVCKIT_SHUTDOWN_TIMEOUT)")
	fs.StringVar(&f.policy, "balancer", lb.P2CEWMA, "load-balancing policy for the backends (a registered name: "+lb.P2CEWMA+", "+lb.WeightedRoundRobin+", "+lb.Random+", "+lb.ConsistentHash+", round_robin)")
	fs.StringVar(&f.tlsCert, "tls-cert", f.cfg.TLSCert, "proxy TLS certificate, PEM (with --tls-key: clients must use TLS; env SVCKIT_TLS_CERT)")
	fs.StringVar(&f.tlsKey, "tls-key", f.cfg.TLSKey, "proxy TLS private key, PEM (env SVCKIT_TLS_KEY)")
	fs.StringVar(&f.tlsCA, "tls-ca", f.cfg.TLSCA, "CA that client certificates must chain to, PEM: mutual TLS (env SVCKIT_TLS_CA)")
	fs.StringVar(&f.backendCA, "backend-ca", "", "CA that backend certificates must chain to, PEM: TLS to the backends")
	fs.StringVar(&f.backendCert, "backend-cert", "", "client certificate for the backends, PEM (mutual TLS)")
	fs.StringVar(&f.backendKey, "backend-key", "", "client key for the backends, PEM")
	if err := cli.Parse(fs, args, stdout); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, &cli.UsageError{Cmd: fs.Name(), Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return f, f.validate()
}

// validate checks the settings that the proxy's options do not.
func (f proxyFlags) validate() error {
	if _, _, err := net.SplitHostPort(f.listen); err != nil {
		return fmt.Errorf("proxy: --listen %q: %w", f.listen, err)
	}
	if f.maxStreams == 0 || f.maxStreams > 1<<31 {
		return fmt.Errorf("proxy: --max-streams %d: want 1 to 2147483648", f.maxStreams)
	}
	if f.maxHeader == 0 || f.maxHeader > math.MaxUint32 {
		return fmt.Errorf("proxy: --max-header-bytes %d: want 1 to %d", f.maxHeader, uint64(math.MaxUint32))
	}
	if (f.tlsCert == "") != (f.tlsKey == "") || (f.tlsCA != "" && f.tlsCert == "") {
		return errors.New("proxy: --tls-cert and --tls-key go together, and --tls-ca needs both")
	}
	if f.backendCA == "" && (f.backendCert != "" || f.backendKey != "") {
		return errors.New("proxy: --backend-cert and --backend-key need --backend-ca")
	}
	if name, _ := lb.Canonical(f.policy); balancer.Get(name) == nil {
		return fmt.Errorf("proxy: --balancer %q: no load-balancing policy of that name is registered", f.policy)
	}
	return nil
}

// options returns the proxy's options, with the TLS files read.
func (f proxyFlags) options(log *slog.Logger) ([]proxy.Option, error) {
	lbName, deprecated := lb.Canonical(f.policy)
	if deprecated {
		log.Warn("deprecated --balancer name", "balancer", f.policy, "use", lbName)
	}
	opts := []proxy.Option{
		proxy.WithPrefix(f.cfg.Prefix),
		proxy.WithLogger(log),
		proxy.WithMaxMsgSize(f.maxMsg),
		proxy.WithMaxConcurrentStreams(uint32(f.maxStreams)),
		proxy.WithMaxHeaderListSize(uint32(f.maxHeader)),
		proxy.WithMaxBackends(f.maxBackends),
		proxy.WithShutdownTimeout(f.shutdown),
		proxy.WithBackendOptions(client.WithBalancer(lbName)),
	}
	if f.tlsCert != "" {
		creds, err := framework.ServerTLS(f.tlsCert, f.tlsKey, f.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		opts = append(opts, proxy.WithServerOption(grpc.Creds(creds)))
	}
	if f.backendCA != "" {
		creds, err := framework.ClientTLS(f.backendCA, f.backendCert, f.backendKey, "")
		if err != nil {
			return nil, fmt.Errorf("proxy: --backend-ca: %w", err)
		}
		opts = append(opts, proxy.WithBackendOptions(client.WithTransportCredentials(creds)))
	}
	return opts, nil
}

// etcdClient returns the etcd client of the settings; it does not wait for
// etcd.
func (f proxyFlags) etcdClient(log *slog.Logger) (*clientv3.Client, error) {
	cc, err := f.cfg.EtcdClientConfig()
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	cc.DialTimeout, cc.Logger = 3*time.Second, log
	cli, err := naming.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return cli, nil
}
