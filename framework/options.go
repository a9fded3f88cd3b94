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
	"github.com/svckit/svckit/framework/overload"
	"github.com/svckit/svckit/framework/serve"
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

// RegistrarStatus is implemented by a Registrar that can say more than
// Registered, as naming.Registrar does. The App exports its Status as the
// metrics svckit_registrations_total, svckit_registration_losses_total and
// svckit_keepalive_age_seconds, and names its State and LastError on
// /readyz. A Registrar without it gets svckit_registered alone.
type RegistrarStatus interface {
	Status() naming.Status
}

// RegistrarFunc builds the Registrar of an instance once its address is
// known.
type RegistrarFunc func(inst naming.Instance) (Registrar, error)

// Option configures an App.
type Option func(*options)

type options struct {
	config           Config // valid once New has resolved it
	configSet        bool
	logger           *slog.Logger
	metadata         naming.Metadata
	unary            []grpc.UnaryServerInterceptor
	stream           []grpc.StreamServerInterceptor
	serverOptions    []grpc.ServerOption
	registrar        RegistrarFunc
	etcdClient       *clientv3.Client
	tracerProvider   trace.TracerProvider
	propagationDelay time.Duration
	signals          bool
	limits           serve.Limits
	registerTimeout  time.Duration
	orca             bool
	readyNeedsReg    bool
	overload         []overload.Option
}

func defaultOptions() options {
	return options{
		logger:           slog.Default(),
		propagationDelay: time.Second,
		signals:          true,
		limits:           serve.DefaultLimits(),
		registerTimeout:  10 * time.Second,
	}
}

// WithConfig sets the configuration; default DefaultConfig overlaid by the
// environment.
func WithConfig(c Config) Option { return func(o *options) { o.config, o.configSet = c, true } }

// WithLogger sets the logger; default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMetadata sets the version, zone, weight and labels of the
// registration record, all at once: a later WithMetadata replaces an
// earlier one whole. The App fills instance id, start time and services
// itself.
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

// WithEtcd makes the App register with cli instead of a client of its own
// made from the configuration. The App does not close it.
func WithEtcd(cli *clientv3.Client) Option { return func(o *options) { o.etcdClient = cli } }

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

// WithLimits sets the largest messages received and sent and the
// concurrent streams per connection; default serve.DefaultLimits() (4 MiB
// each way, 1000 streams). Start from the default and change what you need.
func WithLimits(l serve.Limits) Option { return func(o *options) { o.limits = l } }

// WithORCA makes the App report its load with ORCA (CPU utilization of the
// process, calls and errors per second, sampled every second) in every
// response's trailer and through the OpenRcaService, so that clients with
// grpc-go's weighted_round_robin (e.g. through svckit xds --wrr) balance on
// the load each instance really has.
func WithORCA() Option { return func(o *options) { o.orca = true } }

// WithOverload configures the App's load shedding beyond --overload-cpu,
// e.g. with overload.WithPriority for the methods to shed first or never;
// each call adds to the last. Shedding is on unless --overload-cpu is 0
// (see Config.OverloadCPU and package overload).
func WithOverload(opts ...overload.Option) Option {
	return func(o *options) { o.overload = append(o.overload, opts...) }
}

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

// resolve validates o and sets its configuration: DefaultConfig overlaid
// by the environment unless WithConfig gave one.
func (o *options) resolve() error {
	switch {
	case o.logger == nil:
		return fmt.Errorf("framework: nil logger")
	case o.propagationDelay < 0:
		return fmt.Errorf("framework: negative propagation delay %s", o.propagationDelay)
	case o.registerTimeout <= 0:
		return fmt.Errorf("framework: register timeout must be positive")
	}
	if err := o.limits.Validate(); err != nil {
		return fmt.Errorf("framework: %w", err)
	}
	if !o.configSet {
		o.config = DefaultConfig()
		if err := o.config.ApplyEnv(nil); err != nil {
			return fmt.Errorf("framework: %w", err)
		}
	}
	if err := o.config.Validate(); err != nil {
		return fmt.Errorf("framework: %w", err)
	}
	return nil
}
