package framework

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/svckit/svckit/framework/naming"
)

// Registrar is what the App drives to publish its instance: register once
// serving, remove before stopping, and say whether the record is live.
type Registrar interface {
	// Register publishes the instance and keeps it published until
	// Deregister.
	Register(ctx context.Context) error
	// Deregister removes the instance within ctx.
	Deregister(ctx context.Context) error
	// Registered reports whether the instance is published now.
	Registered() bool
	// Done is closed if the registrar stops by itself.
	Done() <-chan struct{}
}

// RegistrarFunc builds the Registrar of an instance once its address is
// known.
type RegistrarFunc func(inst naming.Instance) (Registrar, error)

// Option configures an App.
type Option func(*options)

type options struct {
	config           *Config
	logger           *slog.Logger
	version          string
	metadata         naming.Metadata
	unary            []grpc.UnaryServerInterceptor
	stream           []grpc.StreamServerInterceptor
	serverOptions    []grpc.ServerOption
	registrar        RegistrarFunc
	etcdClient       *clientv3.Client
	tracerProvider   trace.TracerProvider
	propagationDelay time.Duration
	signals          bool
	maxRecvMsgSize   int
	maxSendMsgSize   int
	maxStreams       uint32
	registerTimeout  time.Duration
	orca             bool
	readyNeedsReg    bool
}

func defaultOptions() options {
	return options{
		logger:           slog.Default(),
		propagationDelay: time.Second,
		signals:          true,
		maxRecvMsgSize:   4 << 20,
		maxSendMsgSize:   4 << 20,
		maxStreams:       1000,
		registerTimeout:  10 * time.Second,
	}
}

// WithConfig sets the configuration; default DefaultConfig overlaid by the
// environment.
func WithConfig(c Config) Option { return func(o *options) { o.config = &c } }

// WithLogger sets the logger; default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithVersion sets the version published in the registration record.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithMetadata adds zone, weight and labels to the registration record. The
// App fills instance id, version, start time and services itself.
func WithMetadata(md naming.Metadata) Option { return func(o *options) { o.metadata = md } }

// WithUnaryInterceptor adds unary interceptors, run after the framework's
// (metrics, logging, panic recovery) in the order given.
func WithUnaryInterceptor(i ...grpc.UnaryServerInterceptor) Option {
	return func(o *options) { o.unary = append(o.unary, i...) }
}

// WithStreamInterceptor adds stream interceptors, run after the
// framework's.
func WithStreamInterceptor(i ...grpc.StreamServerInterceptor) Option {
	return func(o *options) { o.stream = append(o.stream, i...) }
}

// WithServerOption adds gRPC server options, applied after the framework's
// so that they win (e.g. keepalive enforcement or TLS credentials).
func WithServerOption(so ...grpc.ServerOption) Option {
	return func(o *options) { o.serverOptions = append(o.serverOptions, so...) }
}

// WithRegistrar replaces the etcd registrar, e.g. with a static registry or
// none in tests.
func WithRegistrar(f RegistrarFunc) Option { return func(o *options) { o.registrar = f } }

// WithEtcdClient makes the App use cli instead of creating a client from
// the configuration. The App does not close it.
func WithEtcdClient(cli *clientv3.Client) Option { return func(o *options) { o.etcdClient = cli } }

// WithTracerProvider turns tracing of the calls served on, with tp; off by
// default (pass otel.GetTracerProvider() for the global one). If tp has
// ForceFlush, the App flushes it on stop.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

// WithPropagationDelay sets the wait between deregistration and the
// graceful stop, so that clients drop the instance first; default 1s.
func WithPropagationDelay(d time.Duration) Option {
	return func(o *options) { o.propagationDelay = d }
}

// WithoutSignals makes Run ignore SIGINT and SIGTERM; the context alone
// stops it (for Apps run inside another program or a test).
func WithoutSignals() Option { return func(o *options) { o.signals = false } }

// WithMaxMsgSize sets the largest message received and sent; default 4 MiB.
func WithMaxMsgSize(recv, send int) Option {
	return func(o *options) { o.maxRecvMsgSize, o.maxSendMsgSize = recv, send }
}

// WithMaxConcurrentStreams bounds streams per connection; default 1000.
func WithMaxConcurrentStreams(n uint32) Option { return func(o *options) { o.maxStreams = n } }

// WithORCA makes the App report its load with ORCA (CPU utilization of the
// process, calls and errors per second, sampled every second) in every
// response's trailer and through the OpenRcaService, so that clients with
// grpc-go's weighted_round_robin (e.g. through svckit xds --wrr) balance on
// the load each instance really has.
func WithORCA() Option { return func(o *options) { o.orca = true } }

// WithRegisterTimeout bounds the first registration; default 10s.
func WithRegisterTimeout(d time.Duration) Option {
	return func(o *options) { o.registerTimeout = d }
}

// WithReadinessRequiresRegistration makes readiness (App.Ready, /readyz)
// also require the instance's record to be live in etcd. Off by default:
// when etcd is away past the TTL every instance loses its record at once,
// and a readiness that follows it takes every instance out of its load
// balancer (on Kubernetes, every pod out of its Service) although the
// instances can still serve. Use it only where nothing but etcd routes to
// the instances.
func WithReadinessRequiresRegistration() Option { return func(o *options) { o.readyNeedsReg = true } }

func (o options) validate() error {
	switch {
	case o.logger == nil:
		return fmt.Errorf("framework: nil logger")
	case o.propagationDelay < 0:
		return fmt.Errorf("framework: negative propagation delay %s", o.propagationDelay)
	case o.maxRecvMsgSize <= 0 || o.maxSendMsgSize <= 0:
		return fmt.Errorf("framework: message sizes must be positive")
	case o.maxStreams == 0:
		return fmt.Errorf("framework: max concurrent streams must be positive")
	case o.registerTimeout <= 0:
		return fmt.Errorf("framework: register timeout must be positive")
	}
	return nil
}
