package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	_ "google.golang.org/grpc/health" // client-side health checking
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/internal/tracing"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/serve"
)

// Client dials svckit services through one etcd client and one resolver
// builder. Its methods are safe for concurrent use.
type Client struct {
	cli      *clientv3.Client
	builder  *naming.Builder
	defaults []Option
	// byContract is idempotentByContract, listed once in New: a field
	// rather than a package-level cache, so the package holds no state.
	byContract [][2]string
	// mu orders Close after the Dials in progress: a Dial holds it for
	// reading until its conn exists, Close for writing to set closed.
	mu     sync.RWMutex
	closed atomic.Bool
	close  func() error
}

// New returns a Client that reads etcd through a client it creates from
// etcd and closes in Close. opts are the defaults of every Dial; New
// refuses invalid ones. It does not wait for etcd to answer.
func New(etcd naming.ClientConfig, opts ...Option) (*Client, error) {
	o := newOptions(opts)
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if etcd.Logger == nil {
		etcd.Logger = o.logger
	}
	cli, err := naming.NewClient(etcd)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c := newClient(cli, o, opts)
	c.close = sync.OnceValue(func() error {
		if err := cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("client: close etcd client: %w", err)
		}
		return nil
	})
	return c, nil
}

// NewFromEtcd returns a Client that reads etcd through cli, which it
// borrows: the caller closes cli after the Client and its conns. opts are
// the defaults of every Dial; NewFromEtcd refuses invalid ones.
func NewFromEtcd(cli *clientv3.Client, opts ...Option) (*Client, error) {
	if cli == nil {
		return nil, errors.New("client: nil etcd client")
	}
	o := newOptions(opts)
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c := newClient(cli, o, opts)
	c.close = func() error { return nil }
	return c, nil
}

func newClient(cli *clientv3.Client, o options, opts []Option) *Client {
	return &Client{
		cli:        cli,
		builder:    naming.NewBuilder(cli, naming.WithResolverLogger(o.logger)),
		defaults:   append([]Option(nil), opts...),
		byContract: idempotentByContract(),
	}
}

// Close closes the etcd client if New created it; one that NewFromEtcd
// borrowed stays open. Close the conns first: a conn dialled from a closed
// Client keeps the instances it knew but gets no update from etcd (its
// resolver retries, and logs each tenth failure, until the conn closes).
// Close waits for the Dials in progress, and every Dial after it fails.
// Close is idempotent: every call returns the first one's result.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed.Store(true)
	c.mu.Unlock()
	return c.close()
}

// Dial returns a conn to the instances of service registered in etcd:
// resolved on etcd:///<prefix><service>, balanced by lb.P2CEWMA unless
// WithBalancer, health-checked, retried on UNAVAILABLE where safe (see
// WithIdempotent), with failing instances ejected (see
// lb.DefaultOutlierDetection), kept alive with pings the App accepts, and
// traced if a tracer provider is given. opts apply after the Client's. Unless
// WithoutWait, Dial waits up to the timeout for a ready instance and
// otherwise fails with codes.Unavailable naming the service. The caller
// closes the conn.
func (c *Client) Dial(ctx context.Context, service string, opts ...Option) (*grpc.ClientConn, error) {
	c.mu.RLock()
	o, err := c.options(service, opts)
	if err != nil {
		c.mu.RUnlock()
		return nil, err
	}
	cc, err := c.newConn(service, o, c.builder)
	c.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	if !o.wait {
		return cc, nil
	}
	if err := c.ready(ctx, cc, service, o); err != nil {
		_ = cc.Close()
		return nil, err
	}
	return cc, nil
}

// Dial is the one-call form of New and Client.Dial for a program that
// needs one conn: the etcd client it creates is closed when the returned
// conn is closed, or at once if Dial fails. The conn never goes idle, so
// its resolver, and the etcd client, live as long as it; it connects at
// once, also WithoutWait.
func Dial(ctx context.Context, etcd naming.ClientConfig, service string, opts ...Option) (*grpc.ClientConn, error) {
	if err := naming.ValidateService(service); err != nil {
		return nil, fmt.Errorf("client: dial: %w", err)
	}
	c, err := New(etcd, opts...)
	if err != nil {
		return nil, err
	}
	o, err := c.options(service, nil)
	if err != nil {
		return nil, errors.Join(err, c.Close())
	}
	// The conn's last option: its resolver, built by Connect, lives until
	// the conn closes, and closes c then.
	cc, err := c.newConn(service, o, closingBuilder{c}, grpc.WithIdleTimeout(0))
	if err != nil {
		return nil, errors.Join(err, c.Close())
	}
	cc.Connect()
	if o.wait {
		if err := c.ready(ctx, cc, service, o); err != nil {
			_ = cc.Close()
			return nil, err
		}
	}
	return cc, nil
}

// options returns the options of one Dial of service: the Client's, then
// opts, validated, with the balancer's canonical name.
func (c *Client) options(service string, opts []Option) (options, error) {
	if c.closed.Load() {
		return options{}, fmt.Errorf("client: dial %s: client closed", service)
	}
	o := newOptions(c.defaults, opts)
	if err := naming.ValidateService(service); err != nil {
		return options{}, fmt.Errorf("client: dial: %w", err)
	}
	if err := o.validate(); err != nil {
		return options{}, fmt.Errorf("client: dial %s: %w", service, err)
	}
	if name, deprecated := lb.Canonical(o.balancer); deprecated {
		o.logger.Warn("deprecated balancer name", "service", service, "balancer", o.balancer, "use", name)
		o.balancer = name
	}
	return o, nil
}

// newConn creates the conn of service with o, resolved by rb (its backoff
// reset when an instance restarts, see restartBuilder); last are dial
// options that come after the caller's.
func (c *Client) newConn(service string, o options, rb resolver.Builder, last ...grpc.DialOption) (*grpc.ClientConn, error) {
	sc, err := serviceConfig(o, c.byContract)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", service, err)
	}
	unary, stream := o.unary, o.stream
	if o.hedge != (hedging{}) {
		unary = append(slices.Clip(unary), newHedger(o.hedge, o.idempotent, c.byContract).unary)
	}
	if t := tracing.New(o.tp); t != nil {
		unary = append([]grpc.UnaryClientInterceptor{t.UnaryClient()}, unary...)
		stream = append([]grpc.StreamClientInterceptor{t.StreamClient()}, stream...)
	}
	conn := new(atomic.Pointer[grpc.ClientConn])
	dopts := []grpc.DialOption{
		grpc.WithResolvers(restartBuilder{rb: rb, conn: conn}),
		grpc.WithTransportCredentials(o.creds),
		grpc.WithDefaultServiceConfig(sc),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: serve.ClientPingInterval, Timeout: serve.ClientPingTimeout, PermitWithoutStream: true}),
		grpc.WithChainUnaryInterceptor(unary...),
		grpc.WithChainStreamInterceptor(stream...),
	}
	if o.metrics != nil {
		m, err := newLBMetrics(o.metrics)
		if err != nil {
			return nil, fmt.Errorf("client: dial %s: %w", service, err)
		}
		dopts = append(dopts, grpc.WithStatsHandler(m))
	}
	dopts = append(append(dopts, o.grpcOpts...), last...)
	cc, err := grpc.NewClient(naming.Scheme+":///"+o.prefix+service, dopts...)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", service, err)
	}
	conn.Store(cc) // before the resolver is built, when cc connects
	return cc, nil
}

// ready waits up to o's timeout for cc to be ready.
func (c *Client) ready(ctx context.Context, cc *grpc.ClientConn, service string, o options) error {
	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cc.Connect()
	start := time.Now()
	for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
		if !cc.WaitForStateChange(wctx, s) {
			after := o.timeout.String()
			if ctx.Err() != nil {
				after = fmt.Sprintf("%s, the caller's context ended (%v)", time.Since(start).Round(time.Millisecond), ctx.Err())
			}
			return status.Errorf(codes.Unavailable, "svckit: no ready instance of %q under etcd %v %s/ after %s (last state %s)",
				service, c.cli.Endpoints(), o.prefix+service, after, s)
		}
	}
	return nil
}

// closingBuilder is the resolver builder of the package-level Dial's conn:
// it builds with the Client's builder, and the resolver's Close closes the
// Client. A failed Build closes it at once: the conn, which never goes
// idle, builds no other.
type closingBuilder struct{ c *Client }

func (b closingBuilder) Scheme() string { return naming.Scheme }

func (b closingBuilder) Build(t resolver.Target, cc resolver.ClientConn, bo resolver.BuildOptions) (resolver.Resolver, error) {
	r, err := b.c.builder.Build(t, cc, bo)
	if err != nil {
		_ = b.c.Close()
		return nil, err
	}
	return closingResolver{Resolver: r, c: b.c}, nil
}

type closingResolver struct {
	resolver.Resolver
	c *Client
}

func (r closingResolver) Close() {
	r.Resolver.Close()
	_ = r.c.Close()
}
