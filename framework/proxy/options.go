package proxy

import (
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/serve"
)

// Option configures a Proxy.
type Option func(*options)

type options struct {
	prefix          string
	logger          *slog.Logger
	maxMsgSize      int
	maxStreams      uint32
	maxHeaderBytes  uint32
	maxBackends     int
	shutdownTimeout time.Duration
	dial            []client.Option
	server          []grpc.ServerOption
}

func defaultOptions() options {
	l := serve.DefaultLimits()
	return options{
		prefix:          naming.DefaultPrefix,
		logger:          slog.Default(),
		maxMsgSize:      l.MaxRecvMsgSize,
		maxStreams:      l.MaxConcurrentStreams,
		maxHeaderBytes:  64 << 10,
		maxBackends:     256,
		shutdownTimeout: 15 * time.Second,
	}
}

// WithPrefix sets the etcd key prefix the proxy routes under; default
// "services/".
func WithPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithLogger sets the logger; default slog.Default(). The proxy never logs
// metadata values.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMaxMsgSize bounds each message forwarded, either way; default 4 MiB,
// the App's, from serve.DefaultLimits. A larger request fails with
// codes.ResourceExhausted at the proxy; a larger response fails the call the
// same way.
func WithMaxMsgSize(n int) Option { return func(o *options) { o.maxMsgSize = n } }

// WithMaxConcurrentStreams bounds the calls in flight on each client
// connection; default 1000, the App's, from serve.DefaultLimits.
func WithMaxConcurrentStreams(n uint32) Option { return func(o *options) { o.maxStreams = n } }

// WithMaxHeaderListSize bounds the headers of each call a client sends
// (method name and metadata, uncompressed, as HTTP/2
// SETTINGS_MAX_HEADER_LIST_SIZE counts them); default 64 KiB, where grpc-go
// allows 16 MiB: a proxy faces callers it does not know, and 64 KiB is
// Envoy's default (60 KiB) rounded up, room for large tokens. A grpc-go
// client refuses to send more (codes.Internal); the server resets any other
// client's stream. Either way the call never reaches a backend, so it does
// not count against any backend instance. The backends have limits of their
// own (grpc-go's default: 16 MiB): raising this above theirs moves the
// refusal to the proxy's call to the backend, which does count as that
// instance failing.
func WithMaxHeaderListSize(n uint32) Option { return func(o *options) { o.maxHeaderBytes = n } }

// WithMaxBackends bounds the cached backend connections, one per svckit
// service; default 256. When full, the idle connection used least recently
// is closed for a new service; if none is idle the call fails with
// codes.ResourceExhausted.
func WithMaxBackends(n int) Option { return func(o *options) { o.maxBackends = n } }

// WithShutdownTimeout bounds the graceful stop, after which calls still in
// flight are cut; default 15s.
func WithShutdownTimeout(d time.Duration) Option { return func(o *options) { o.shutdownTimeout = d } }

// WithBackendOptions adds options to the client.Client that dials each
// backend service, e.g. client.WithBalancer, client.WithTransportCredentials
// or client.WithIdempotent. The proxy sets the etcd client, the prefix,
// WithoutWait and the message size limits, and no tracer provider: trace
// context crosses the proxy untouched.
func WithBackendOptions(b ...client.Option) Option {
	return func(o *options) { o.dial = append(o.dial, b...) }
}

// WithServerOption adds gRPC server options, applied after the proxy's,
// e.g. grpc.Creds for TLS.
func WithServerOption(so ...grpc.ServerOption) Option {
	return func(o *options) { o.server = append(o.server, so...) }
}

func (o options) validate() error {
	switch {
	case o.logger == nil:
		return fmt.Errorf("proxy: nil logger")
	case o.maxMsgSize <= 0:
		return fmt.Errorf("proxy: max message size %d must be positive", o.maxMsgSize)
	case o.maxStreams == 0:
		return fmt.Errorf("proxy: max concurrent streams must be positive")
	case o.maxHeaderBytes == 0:
		return fmt.Errorf("proxy: max header list size must be positive")
	case o.maxBackends <= 0:
		return fmt.Errorf("proxy: max backends %d must be positive", o.maxBackends)
	case o.shutdownTimeout <= 0:
		return fmt.Errorf("proxy: shutdown timeout %s must be positive", o.shutdownTimeout)
	}
	if o.prefix == "" {
		return fmt.Errorf("proxy: empty prefix: the proxy routes under one prefix such as %q", naming.DefaultPrefix)
	}
	if err := naming.ValidatePrefix(o.prefix); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	return nil
}
