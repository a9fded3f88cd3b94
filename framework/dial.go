package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/svckit/svckit/framework/internal/tracing"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/framework/naming"
)

// DialOption configures Dial.
type DialOption func(*dialOptions)

type dialOptions struct {
	etcd       *naming.ClientConfig
	client     *clientv3.Client
	prefix     string
	balancer   string
	timeout    time.Duration
	wait       bool
	idempotent []string
	retryAll   bool
	creds      credentials.TransportCredentials
	tp         trace.TracerProvider
	unary      []grpc.UnaryClientInterceptor
	stream     []grpc.StreamClientInterceptor
	grpcOpts   []grpc.DialOption
	logger     *slog.Logger
}

// WithEtcd sets how Dial reaches etcd; default SVCKIT_ETCD_ENDPOINTS (and
// SVCKIT_ETCD_USER, SVCKIT_ETCD_PASSWORD), else 127.0.0.1:2379. Connections
// with the same etcd configuration share one etcd client and one watch per
// service.
func WithEtcd(c naming.ClientConfig) DialOption { return func(o *dialOptions) { o.etcd = &c } }

// WithDialEtcdClient makes Dial use cli; Dial does not close it.
func WithDialEtcdClient(cli *clientv3.Client) DialOption {
	return func(o *dialOptions) { o.client = cli }
}

// WithPrefix sets the etcd key prefix; default SVCKIT_PREFIX, else
// "services/".
func WithPrefix(p string) DialOption { return func(o *dialOptions) { o.prefix = p } }

// WithBalancer sets the load-balancing policy by its registered name;
// default lb.P2CEWMA. The names svckit's policies had before the "svckit_"
// prefix (p2c_ewma, random, consistent_hash) are read as the prefixed ones,
// with a warning from Dial: see lb.Canonical.
func WithBalancer(name string) DialOption { return func(o *dialOptions) { o.balancer = name } }

// WithDialTimeout bounds how long Dial waits for a ready instance; default
// 5s.
func WithDialTimeout(d time.Duration) DialOption { return func(o *dialOptions) { o.timeout = d } }

// WithoutWait makes Dial return at once, before any instance is ready;
// calls then fail or wait as their own options say.
func WithoutWait() DialOption { return func(o *dialOptions) { o.wait = false } }

// WithIdempotent marks methods ("/pkg.Svc/Method") or whole services
// ("pkg.Svc") as safe to retry on UNAVAILABLE, up to 3 attempts. The health
// service's Check, and every method whose proto declares idempotency_level
// IDEMPOTENT or NO_SIDE_EFFECTS, are always retried.
func WithIdempotent(names ...string) DialOption {
	return func(o *dialOptions) { o.idempotent = append(o.idempotent, names...) }
}

// WithRetryAll retries every method on UNAVAILABLE: only for services whose
// every method is idempotent.
func WithRetryAll() DialOption { return func(o *dialOptions) { o.retryAll = true } }

// WithTransportCredentials sets TLS or other credentials; default
// plaintext.
func WithTransportCredentials(c credentials.TransportCredentials) DialOption {
	return func(o *dialOptions) { o.creds = c }
}

// WithDialTracerProvider turns tracing of the calls made on, with tp; off
// by default (pass otel.GetTracerProvider() for the global one).
func WithDialTracerProvider(tp trace.TracerProvider) DialOption {
	return func(o *dialOptions) { o.tp = tp }
}

// WithClientInterceptors adds unary and stream client interceptors.
func WithClientInterceptors(u []grpc.UnaryClientInterceptor, s []grpc.StreamClientInterceptor) DialOption {
	return func(o *dialOptions) { o.unary, o.stream = append(o.unary, u...), append(o.stream, s...) }
}

// WithGRPCDialOption adds raw grpc dial options, applied last.
func WithGRPCDialOption(d ...grpc.DialOption) DialOption {
	return func(o *dialOptions) { o.grpcOpts = append(o.grpcOpts, d...) }
}

// WithDialLogger sets the logger of the resolver; default slog.Default().
func WithDialLogger(l *slog.Logger) DialOption { return func(o *dialOptions) { o.logger = l } }

// Dial returns a connection to the instances of service registered in etcd:
// resolved by the svckit resolver on etcd:///<prefix><service>, balanced by
// lb.P2CEWMA, health-checked, retried on UNAVAILABLE where safe, traced with
// OpenTelemetry, and kept alive with pings the App accepts. Unless
// WithoutWait, it waits up to the dial timeout for a ready instance and
// otherwise fails with codes.Unavailable naming the service.
func Dial(ctx context.Context, service string, opts ...DialOption) (*grpc.ClientConn, error) {
	o := dialOptions{
		balancer: lb.P2CEWMA,
		timeout:  5 * time.Second,
		wait:     true,
		creds:    insecure.NewCredentials(),
		logger:   slog.Default(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := naming.ValidateService(service); err != nil {
		return nil, fmt.Errorf("framework: dial: %w", err)
	}
	if name, deprecated := lb.Canonical(o.balancer); deprecated {
		o.logger.Warn("deprecated balancer name", "service", service, "balancer", o.balancer, "use", name)
		o.balancer = name
	}
	if o.prefix == "" {
		o.prefix = naming.DefaultPrefix
		cfg := DefaultConfig()
		if err := cfg.ApplyEnv(nil); err == nil {
			o.prefix = cfg.Prefix
		}
	}
	if err := naming.ValidatePrefix(o.prefix); err != nil {
		return nil, fmt.Errorf("framework: dial: %w", err)
	}
	if o.client == nil && o.etcd == nil {
		cfg := DefaultConfig()
		if err := cfg.ApplyEnv(nil); err != nil {
			return nil, fmt.Errorf("framework: dial: %w", err)
		}
		cc, err := cfg.EtcdClientConfig()
		if err != nil {
			return nil, fmt.Errorf("framework: dial: %w", err)
		}
		o.etcd = &cc
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("framework: dial: timeout %s must be positive", o.timeout)
	}
	sc, err := serviceConfig(o)
	if err != nil {
		return nil, err
	}
	target := naming.Scheme + ":///" + o.prefix + service
	dopts := []grpc.DialOption{
		grpc.WithResolvers(&sharedResolver{opts: o}),
		grpc.WithTransportCredentials(o.creds),
		grpc.WithDefaultServiceConfig(sc),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	}
	if t := tracing.New(o.tp); t != nil {
		o.unary = append([]grpc.UnaryClientInterceptor{t.UnaryClient()}, o.unary...)
		o.stream = append([]grpc.StreamClientInterceptor{t.StreamClient()}, o.stream...)
	}
	dopts = append(dopts, grpc.WithChainUnaryInterceptor(o.unary...), grpc.WithChainStreamInterceptor(o.stream...))
	cc, err := grpc.NewClient(target, append(dopts, o.grpcOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("framework: dial %s: %w", service, err)
	}
	if !o.wait {
		return cc, nil
	}
	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cc.Connect()
	for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
		if !cc.WaitForStateChange(wctx, s) {
			_ = cc.Close()
			return nil, status.Errorf(codes.Unavailable, "svckit: no ready instance of %q under %s%s/ after %s (last state %s)",
				service, o.etcdString(), o.prefix+service, o.timeout, s)
		}
	}
	return cc, nil
}

func (o dialOptions) etcdString() string {
	if o.client != nil {
		return fmt.Sprintf("etcd %v ", o.client.Endpoints())
	}
	return fmt.Sprintf("etcd %v ", o.etcd.Endpoints)
}

// serviceConfig builds the default service config: the balancer, health
// checking, and the retry policy.
func serviceConfig(o dialOptions) (string, error) {
	type name struct {
		Service string `json:"service,omitempty"`
		Method  string `json:"method,omitempty"`
	}
	retry := map[string]any{
		"maxAttempts": 3, "initialBackoff": "0.05s", "maxBackoff": "1s", "backoffMultiplier": 2,
		"retryableStatusCodes": []string{"UNAVAILABLE"},
	}
	names := []name{{Service: healthpb.Health_ServiceDesc.ServiceName, Method: "Check"}}
	for _, m := range idempotentByContract() {
		names = append(names, name{Service: m[0], Method: m[1]})
	}
	if o.retryAll {
		names = []name{{}}
	}
	for _, n := range o.idempotent {
		n = strings.TrimPrefix(n, "/")
		svc, method, _ := strings.Cut(n, "/")
		if svc == "" {
			return "", fmt.Errorf("framework: dial: idempotent name %q: want pkg.Svc or /pkg.Svc/Method", n)
		}
		names = append(names, name{Service: svc, Method: method})
	}
	sc := map[string]any{
		"loadBalancingConfig": []map[string]any{{o.balancer: map[string]any{}}},
		"healthCheckConfig":   map[string]any{"serviceName": ""},
		"methodConfig":        []map[string]any{{"name": names, "retryPolicy": retry}},
	}
	b, err := json.Marshal(sc)
	return string(b), err
}

// idempotentByContract lists, once, the methods of every protobuf service
// linked into the program whose proto says idempotency_level IDEMPOTENT or
// NO_SIDE_EFFECTS: safe to retry by their own contract.
var idempotentByContract = sync.OnceValue(func() [][2]string {
	var out [][2]string
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		svcs := fd.Services()
		for i := range svcs.Len() {
			sd := svcs.Get(i)
			ms := sd.Methods()
			for j := range ms.Len() {
				md := ms.Get(j)
				opts, ok := md.Options().(*descriptorpb.MethodOptions)
				if !ok {
					continue
				}
				switch opts.GetIdempotencyLevel() {
				case descriptorpb.MethodOptions_IDEMPOTENT, descriptorpb.MethodOptions_NO_SIDE_EFFECTS:
					out = append(out, [2]string{string(sd.FullName()), string(md.Name())})
				}
			}
		}
		return true
	})
	return out
})

// sharedResolver is the resolver.Builder of one connection: it borrows the
// process's shared etcd client and naming.Builder for its etcd
// configuration while a resolver is open, so that connections to a service
// share one watch.
type sharedResolver struct {
	opts dialOptions
}

func (s *sharedResolver) Scheme() string { return naming.Scheme }

func (s *sharedResolver) Build(t resolver.Target, cc resolver.ClientConn, bo resolver.BuildOptions) (resolver.Resolver, error) {
	e, err := pool.acquire(s.opts)
	if err != nil {
		return nil, err
	}
	r, err := e.builder.Build(t, cc, bo)
	if err != nil {
		pool.release(e)
		return nil, err
	}
	return &pooledResolver{Resolver: r, e: e}, nil
}

type pooledResolver struct {
	resolver.Resolver
	e    *poolEntry
	once sync.Once
}

func (r *pooledResolver) Close() {
	r.once.Do(func() {
		r.Resolver.Close()
		pool.release(r.e)
	})
}

// clientPool shares etcd clients and resolver builders between
// connections; the one piece of process-wide state in svckit besides gRPC's
// registries.
type clientPool struct {
	mu      sync.Mutex
	entries map[string]*poolEntry
}

type poolEntry struct {
	key     string
	cli     *clientv3.Client
	own     bool
	builder *naming.Builder
	refs    int
}

var pool = &clientPool{entries: make(map[string]*poolEntry)}

func (p *clientPool) acquire(o dialOptions) (*poolEntry, error) {
	key := ""
	if o.client != nil {
		key = fmt.Sprintf("client:%p", o.client)
	} else {
		// In memory only, never logged: the password keeps configurations
		// of different credentials apart.
		key = fmt.Sprintf("config:%v|%s|%s|%p", o.etcd.Endpoints, o.etcd.Username, o.etcd.Password, o.etcd.TLS)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.entries[key]; ok {
		e.refs++
		return e, nil
	}
	e := &poolEntry{key: key, cli: o.client, refs: 1}
	if e.cli == nil {
		cfg := *o.etcd
		if cfg.Logger == nil {
			cfg.Logger = o.logger
		}
		cli, err := naming.NewClient(cfg)
		if err != nil {
			return nil, err
		}
		e.cli, e.own = cli, true
	}
	e.builder = naming.NewBuilder(e.cli, naming.WithResolverLogger(o.logger))
	p.entries[key] = e
	return e, nil
}

func (p *clientPool) release(e *poolEntry) {
	p.mu.Lock()
	e.refs--
	last := e.refs == 0
	if last {
		delete(p.entries, e.key)
	}
	p.mu.Unlock()
	if last && e.own {
		_ = e.cli.Close()
	}
}
