package naming

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// ClientConfig says how to reach etcd. Password is never logged.
type ClientConfig struct {
	// Endpoints are etcd client addresses (host:port or URLs). Required.
	Endpoints []string
	// DialTimeout bounds the first connection. Default 5s.
	DialTimeout time.Duration
	// Username and Password authenticate to etcd when Username is set.
	Username string
	Password string
	// TLS, when set, is used for every connection to etcd.
	TLS *tls.Config
	// Logger receives the etcd client's warnings and errors. Default
	// slog.Default().
	Logger *slog.Logger
}

// String describes c without its password.
func (c ClientConfig) String() string {
	auth := "none"
	if c.Username != "" {
		auth = "user " + c.Username
	}
	return fmt.Sprintf("etcd %v (tls %t, auth %s)", c.Endpoints, c.TLS != nil, auth)
}

// NewClient returns an etcd client for c. It refuses a config without
// endpoints; it does not wait for etcd to answer (see Ping).
func NewClient(c ClientConfig) (*clientv3.Client, error) {
	if len(c.Endpoints) == 0 {
		return nil, fmt.Errorf("naming: no etcd endpoints: %w", ErrInvalid)
	}
	if c.Password != "" && c.Username == "" {
		return nil, fmt.Errorf("naming: etcd password without username: %w", ErrInvalid)
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            c.Endpoints,
		DialTimeout:          c.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Username:             c.Username,
		Password:             c.Password,
		TLS:                  c.TLS,
		Logger:               ZapLogger(c.Logger.With("component", "etcd-client")),
		// etcd's own client accepts replies of up to 2 GiB; svckit lists in
		// pages, and a record is at most MaxRecordBytes.
		MaxCallRecvMsgSize: 64 << 20,
		MaxCallSendMsgSize: 2 << 20,
		// gRPC's default reconnect backoff grows to 120s: after an etcd
		// outage of a few seconds, the client would come back seconds
		// after etcd did, and registrations with it. Cap it at 1s.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: c.DialTimeout,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("naming: etcd client for %v: %w", c.Endpoints, err)
	}
	return cli, nil
}

// Ping checks that etcd answers within ctx, naming the endpoints if not.
func Ping(ctx context.Context, cli *clientv3.Client) error {
	if _, err := cli.Get(ctx, "svckit-ping", clientv3.WithCountOnly()); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = errors.New("no answer")
		}
		return fmt.Errorf("naming: etcd %v: %w", cli.Endpoints(), err)
	}
	return nil
}

// ZapLogger returns a zap logger that writes warnings and errors to l, for
// the etcd client and server, which log with zap.
func ZapLogger(l *slog.Logger) *zap.Logger {
	return zap.New(&slogCore{l: l, level: zapcore.WarnLevel})
}

// slogCore is a zapcore.Core that hands entries to a slog.Logger.
type slogCore struct {
	l      *slog.Logger
	level  zapcore.Level
	fields []zapcore.Field
}

func (c *slogCore) Enabled(l zapcore.Level) bool { return l >= c.level }

func (c *slogCore) With(fs []zapcore.Field) zapcore.Core {
	return &slogCore{l: c.l, level: c.level, fields: append(append([]zapcore.Field(nil), c.fields...), fs...)}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fs {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	lvl := slog.LevelWarn
	if e.Level >= zapcore.ErrorLevel {
		lvl = slog.LevelError
	}
	c.l.LogAttrs(context.Background(), lvl, e.Message, attrs...)
	return nil
}

func (c *slogCore) Sync() error { return nil }
