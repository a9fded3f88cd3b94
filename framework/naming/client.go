package naming

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
	// TLS, when set, is used for every connection to etcd, also to
	// host:port endpoints (http:// ones drop it, https:// ones use the
	// system roots without it). Without a client certificate the client
	// sends none, also when etcd or a TLS proxy in front of it asks for one
	// it does not require; when etcd refuses the handshake for want of
	// one, Ping's error says so.
	TLS *tls.Config
	// Logger receives the etcd client's warnings and errors. Default
	// slog.Default().
	Logger *slog.Logger
	// LogLevel is the least level of the etcd client's own logs that
	// reach Logger; default slog.LevelWarn. Commands whose errors say
	// enough raise it to slog.LevelError: the client warns at every retry.
	// NewClient's own warnings are not filtered.
	LogLevel slog.Level
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
// endpoints; it does not wait for etcd to answer (see Ping). A client that
// would send a password in clear to an etcd that is not on this host logs
// one warning.
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
	if ep, ok := passwordInClear(c); ok {
		c.Logger.Warn("etcd password sent in plaintext: use TLS to etcd (--etcd-ca or https://)", "endpoint", ep, "user", c.Username)
	}
	cli, err := clientv3.New(clientv3.Config{
		// Ping reads how the client meets TLS from the client's context.
		Context:              context.WithValue(context.Background(), tlsUseKey{}, tlsUseOf(c)),
		Endpoints:            c.Endpoints,
		DialTimeout:          c.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Username:             c.Username,
		Password:             c.Password,
		TLS:                  c.TLS,
		Logger:               zapLogger(c.Logger.With("component", "etcd-client"), max(c.LogLevel, slog.LevelWarn)),
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

// tlsUseKey is the key of the client's context whose value, a tlsUse, says
// how a client made by NewClient meets TLS.
type tlsUseKey struct{}

// tlsUse says whether a client dials etcd without TLS, or with TLS but no
// client certificate.
type tlsUse struct{ plaintext, certless bool }

// tlsUseOf says how a client of c meets TLS: etcd's client dials every
// endpoint with the scheme of the first (see passwordInClear).
func tlsUseOf(c ClientConfig) tlsUse {
	scheme, _, found := strings.Cut(c.Endpoints[0], "://")
	plaintext := c.TLS == nil
	if found {
		plaintext = scheme != "https" && scheme != "unixs"
	}
	certless := c.TLS == nil || (len(c.TLS.Certificates) == 0 && c.TLS.GetClientCertificate == nil)
	return tlsUse{plaintext: plaintext, certless: !plaintext && certless}
}

// passwordInClear reports whether c sends a password without TLS to an
// endpoint off this host, and names the endpoint. etcd's client dials
// every endpoint with the scheme of the first: http:// drops TLS, https://
// forces it, and host:port uses TLS when c.TLS is set.
func passwordInClear(c ClientConfig) (string, bool) {
	if c.Password == "" || len(c.Endpoints) == 0 {
		return "", false
	}
	scheme, _, found := strings.Cut(c.Endpoints[0], "://")
	switch {
	case found && (scheme == "https" || scheme == "unixs"):
		return "", false
	case c.TLS != nil && scheme != "http":
		return "", false
	}
	for _, ep := range c.Endpoints {
		if !loopback(ep) {
			return ep, true
		}
	}
	return "", false
}

// loopback reports whether etcd endpoint ep is on this host: a loopback
// address, localhost or a unix socket.
func loopback(ep string) bool {
	if strings.HasPrefix(ep, "unix:") || strings.HasPrefix(ep, "unixs:") {
		return true
	}
	if _, rest, found := strings.Cut(ep, "://"); found {
		ep = rest
	}
	host, _, err := net.SplitHostPort(ep)
	if err != nil {
		host = ep
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Ping checks that etcd answers within ctx; a denied read (etcd's RBAC)
// is an answer. If not, the error names the
// endpoints and the last connection error, such as a refused TLS
// handshake, rather than only the deadline. For a client made by NewClient
// whose TLS settings explain the refusal, the error says so and wraps
// ErrTLS.
func Ping(ctx context.Context, cli *clientv3.Client) error {
	var (
		mu   sync.Mutex
		last error // of the last attempt: the etcd client retries
	)
	onFinish := grpc.OnFinish(func(err error) {
		if err != nil && ctx.Err() == nil {
			mu.Lock()
			last = err
			mu.Unlock()
		}
	})
	_, err := pb.NewKVClient(cli.ActiveConnection()).Range(ctx, &pb.RangeRequest{Key: []byte("svckit-ping"), CountOnly: true}, onFinish)
	if err == nil || status.Code(err) == codes.PermissionDenied {
		// A user whose role reads only the prefix is denied the ping's
		// key: etcd answered, and authenticated the user.
		return nil
	}
	mu.Lock()
	defer mu.Unlock()
	if ctx.Err() != nil {
		err = errors.New("no answer")
		if last != nil {
			err = fmt.Errorf("no answer: %s", status.Convert(last).Message())
		}
	} else if status.Code(err) == codes.Unavailable {
		err = errors.New(status.Convert(err).Message()) // a connection error
	}
	use, known := cli.Ctx().Value(tlsUseKey{}).(tlsUse)
	if known {
		err = explainTLS(err, cli.Endpoints()[0], use)
	}
	return fmt.Errorf("naming: etcd %v: %w", cli.Endpoints(), err)
}

// ErrTLS marks a Ping error that says why the TLS settings of the client
// do not fit etcd's: a plaintext client of a TLS etcd, or a client without
// a certificate that etcd requires. Waiting does not fix it.
var ErrTLS = errors.New("naming: TLS settings do not fit etcd's")

// tlsError is an error of Ping explained by the TLS settings: it reads as
// msg and is both err and ErrTLS.
type tlsError struct {
	err error
	msg string
}

func (e *tlsError) Error() string   { return e.msg }
func (e *tlsError) Unwrap() []error { return []error{e.err, ErrTLS} }

// explainTLS returns err, the last connection error of a client that meets
// TLS as use says, with why etcd at ep refused it when the TLS settings
// explain it; it probes ep only when they may. A client with a certificate
// is never told that it lacks one: a reset or EOF is then etcd restarting,
// not refusing.
func explainTLS(err error, ep string, use tlsUse) error {
	msg := err.Error()
	switch {
	case use.certless && (certAlert(err) || refusedHandshake(err) && refusesCertless(ep)):
		// A client without a certificate that etcd requires sees the alert
		// that says so (TLS 1.3 reads it with the server preface) or, done
		// with its side of a TLS 1.3 handshake and writing when etcd
		// closes, only a broken pipe: say why. The alert "certificate
		// required" means that none was sent.
		why := "a TLS client certificate that it trusts"
		if strings.Contains(msg, "certificate required") {
			why = "a TLS client certificate and none is configured"
		}
		return &tlsError{err, fmt.Sprintf("%s (etcd at %s requires %s: --etcd-cert, --etcd-key)", msg, ep, why)}
	case use.plaintext && strings.Contains(msg, "server preface") && speaksTLS(ep):
		// A plaintext client of a TLS-only etcd sees only a connection
		// that closes ("error reading server preface: EOF"): say why.
		return &tlsError{err, fmt.Sprintf("%s (etcd at %s speaks TLS, this client does not)", msg, ep)}
	}
	return err
}

// speaksTLS reports whether a TLS handshake with ep (host:port or
// http://host:port) gets a TLS answer within a second. It verifies
// nothing: it only tells a TLS server from a plaintext one.
func speaksTLS(ep string) bool {
	if _, rest, found := strings.Cut(ep, "://"); found {
		ep = rest
	}
	d := &net.Dialer{Timeout: time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", ep, &tls.Config{InsecureSkipVerify: true}) // a probe: no data is sent
	if err != nil {
		// A TLS 1.2 server that requires a client certificate answers
		// with an alert, which is TLS too.
		var alert tls.AlertError
		return errors.As(err, &alert) || strings.Contains(err.Error(), "remote error: tls")
	}
	_ = conn.Close()
	return true
}

// refusedHandshake reports whether err looks like a TLS handshake that the
// server refused: an alert about the client's certificate, or a connection
// that the server closed while the client wrote. A connection closed by a
// restarting etcd looks the same: only a client without a certificate may
// take it for a refusal, and only when a probe is refused too.
func refusedHandshake(err error) bool {
	msg := err.Error()
	for _, s := range []string{"certificate required", "bad certificate", "broken pipe", "connection reset", "EOF"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// refusesCertless reports whether ep (host:port or https://host:port)
// asks a TLS client for a certificate and refuses a client that sends
// none, within a second. It verifies nothing and sends no data: it only
// tells why a handshake failed.
func refusesCertless(ep string) bool {
	if _, rest, found := strings.Cut(ep, "://"); found {
		ep = rest
	}
	asked := false
	cfg := &tls.Config{
		InsecureSkipVerify: true, // a probe: no data is sent
		NextProtos:         []string{"h2"},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked = true
			return &tls.Certificate{}, nil // send none
		},
	}
	d := &net.Dialer{Timeout: time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", ep, cfg)
	if err != nil {
		return certAlert(err) // TLS 1.2: refused within the handshake
	}
	defer conn.Close()
	if !asked {
		return false
	}
	// TLS 1.3: the server refuses after the client's last handshake
	// message, with an alert that the next read returns.
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	_, err = conn.Read(make([]byte, 1))
	return err != nil && certAlert(err)
}

// certAlert reports whether err is a TLS alert about the client's
// certificate.
func certAlert(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate")
}

// zapLogger returns a zap logger that writes entries of level or above to
// l; level is slog.LevelWarn or slog.LevelError.
func zapLogger(l *slog.Logger, level slog.Level) *zap.Logger {
	zl := zapcore.WarnLevel
	if level >= slog.LevelError {
		zl = zapcore.ErrorLevel
	}
	return zap.New(&slogCore{l: l, level: zl})
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
