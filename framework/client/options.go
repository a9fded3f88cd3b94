package client

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/framework/naming"
)

// Option configures a Client (the defaults of its every Dial) or one Dial.
// Options that add (WithIdempotent, the interceptors, WithGRPCOption) add
// a Dial's to the Client's; the others replace the Client's.
type Option func(*options)

type options struct {
	prefix     string
	balancer   string
	timeout    time.Duration
	wait       bool
	idempotent []string
	creds      credentials.TransportCredentials
	tp         trace.TracerProvider
	unary      []grpc.UnaryClientInterceptor
	stream     []grpc.StreamClientInterceptor
	grpcOpts   []grpc.DialOption
	logger     *slog.Logger
	outlier    *lb.OutlierDetection // nil: no ejection
	metrics    prometheus.Registerer
	hedge      hedging // zero: no hedging
}

// hedging is the setting of WithHedging.
type hedging struct {
	delay    time.Duration
	attempts int
}

// newOptions applies opts, in order, over the defaults.
func newOptions(opts ...[]Option) options {
	o := options{
		prefix:   naming.DefaultPrefix,
		balancer: lb.P2CEWMA,
		timeout:  5 * time.Second,
		wait:     true,
		creds:    insecure.NewCredentials(),
		logger:   slog.Default(),
		outlier:  new(lb.DefaultOutlierDetection()),
	}
	for _, list := range opts {
		for _, opt := range list {
			opt(&o)
		}
	}
	return o
}

// WithPrefix sets the etcd key prefix services register under; default
// "services/" (naming.DefaultPrefix).
func WithPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithBalancer sets the load-balancing policy by its registered name;
// default lb.P2CEWMA. The names svckit's policies had before the "svckit_"
// prefix (p2c_ewma, random, consistent_hash) are read as the prefixed ones,
// with a warning from Dial: see lb.Canonical.
func WithBalancer(name string) Option { return func(o *options) { o.balancer = name } }

// WithTimeout bounds how long Dial waits for a ready instance; default 5s.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithoutWait makes Dial return at once, before any instance is ready;
// calls then fail or wait as their own options say.
func WithoutWait() Option { return func(o *options) { o.wait = false } }

// WithIdempotent marks methods ("/pkg.Svc/Method") or whole services
// ("pkg.Svc") as safe to retry on UNAVAILABLE, up to 3 attempts. The health
// service's Check, and every method whose proto declares idempotency_level
// IDEMPOTENT or NO_SIDE_EFFECTS, are always retried.
func WithIdempotent(names ...string) Option {
	return func(o *options) { o.idempotent = append(o.idempotent, names...) }
}

// WithTransportCredentials sets TLS or other credentials; default
// plaintext.
func WithTransportCredentials(c credentials.TransportCredentials) Option {
	return func(o *options) { o.creds = c }
}

// WithTracerProvider traces the calls made on each conn with tp, as client
// spans whose context the callee continues. Without it tracing is off (pass
// otel.GetTracerProvider() for the global provider).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tp = tp } }

// WithUnaryInterceptor adds unary client interceptors, run in the order
// given, after the tracing one.
func WithUnaryInterceptor(i ...grpc.UnaryClientInterceptor) Option {
	return func(o *options) { o.unary = append(o.unary, i...) }
}

// WithStreamInterceptor adds stream client interceptors, run in the order
// given, after the tracing one.
func WithStreamInterceptor(i ...grpc.StreamClientInterceptor) Option {
	return func(o *options) { o.stream = append(o.stream, i...) }
}

// WithGRPCOption adds raw grpc dial options, applied after the client's
// own, so they win.
func WithGRPCOption(d ...grpc.DialOption) Option {
	return func(o *options) { o.grpcOpts = append(o.grpcOpts, d...) }
}

// WithLogger sets the logger; default slog.Default(). Given to New, it is
// the logger of the resolver and, unless the naming.ClientConfig names
// one, of the etcd client; given to Dial, it logs that Dial's warnings.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithOutlierDetection sets the outlier ejection of svckit's balancers
// (the lb.OutlierDetection of their config); default
// lb.DefaultOutlierDetection(). The zero lb.OutlierDetection turns
// ejection off. Another balancer (WithBalancer) runs inside
// lb.OutlierDetectionPolicy, which ejects by picking again past an
// ejected instance: see there for the policies that gain from it.
func WithOutlierDetection(od lb.OutlierDetection) Option {
	return func(o *options) {
		if od == (lb.OutlierDetection{}) {
			o.outlier = nil
			return
		}
		o.outlier = new(od.Clone())
	}
}

// WithMetrics registers the conns' balancer metrics on reg:
// svckit_lb_ejections_total (by target, policy and detection method) and
// svckit_lb_ejected (endpoints ejected now, by target and policy). Conns
// of one Client share them. Default: no metrics, and no stats handler on
// the conns (a handler costs gRPC some work on every call).
func WithMetrics(reg prometheus.Registerer) Option { return func(o *options) { o.metrics = reg } }

// WithHedging hedges the unary calls of idempotent methods (those that
// are retried, see WithIdempotent): when a call has no answer after delay,
// it is sent again, and the balancer picks again, up to attempts in all
// (2 to 5); the first answer wins and the others are cancelled. An attempt
// failing with UNAVAILABLE or RESOURCE_EXHAUSTED sends the next at once.
// It cuts the tail a slow instance adds, at the cost of the extra
// attempts: a budget holds them to about one call in ten, in bursts of
// ten. Its interceptor runs after (inside) the caller's. gRPC's hedging
// policy, which grpc-go does not carry out. Default: off. Set delay near
// the method's p95: lower hedges too many calls.
func WithHedging(delay time.Duration, attempts int) Option {
	return func(o *options) { o.hedge = hedging{delay: delay, attempts: attempts} }
}

// validate returns every invalid setting of o, joined.
func (o options) validate() error {
	var errs []error
	if o.logger == nil {
		errs = append(errs, errors.New("nil logger"))
	}
	if o.balancer == "" {
		errs = append(errs, errors.New("empty balancer name"))
	}
	if o.timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout %s must be positive", o.timeout))
	}
	if o.creds == nil {
		errs = append(errs, errors.New("nil transport credentials"))
	}
	if o.outlier != nil {
		if err := o.outlier.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("outlier detection: %w", err))
		}
	}
	if h := o.hedge; h != (hedging{}) && (h.delay <= 0 || h.attempts < 2 || h.attempts > 5) {
		errs = append(errs, fmt.Errorf("hedging after %s up to %d attempts: want a positive delay and 2 to 5 attempts", h.delay, h.attempts))
	}
	if err := naming.ValidatePrefix(o.prefix); err != nil {
		errs = append(errs, err)
	}
	for _, n := range o.idempotent {
		if _, _, err := splitIdempotent(n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// splitIdempotent splits a WithIdempotent name into its service and, for a
// method, the method.
func splitIdempotent(n string) (svc, method string, err error) {
	svc, method, _ = strings.Cut(strings.TrimPrefix(n, "/"), "/")
	if svc == "" {
		return "", "", fmt.Errorf("idempotent name %q: want pkg.Svc or /pkg.Svc/Method", n)
	}
	return svc, method, nil
}
