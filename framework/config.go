package framework

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/svckit/svckit/framework/naming"
)

// Config is the operator's configuration of a service: the standard flags
// and environment variables. Flags win over the environment, the
// environment over the defaults.
type Config struct {
	// Etcd lists the etcd endpoints. --etcd, SVCKIT_ETCD_ENDPOINTS.
	Etcd []string
	// EtcdUser authenticates to etcd. --etcd-user, SVCKIT_ETCD_USER. The
	// password is read only from SVCKIT_ETCD_PASSWORD or the file named by
	// SVCKIT_ETCD_PASSWORD_FILE, never a flag (flags show in ps).
	EtcdUser     string
	etcdPassword string
	// Listen is the gRPC listen address. --listen, SVCKIT_LISTEN.
	Listen string
	// Advertise is the address written to etcd; empty means the bound
	// address. --advertise, SVCKIT_ADVERTISE.
	Advertise string
	// TTL is the lease TTL. --ttl, SVCKIT_TTL.
	TTL time.Duration
	// Admin is the admin HTTP address; empty means off. --admin,
	// SVCKIT_ADMIN.
	Admin string
	// ShutdownTimeout bounds the graceful stop. --shutdown-timeout,
	// SVCKIT_SHUTDOWN_TIMEOUT.
	ShutdownTimeout time.Duration
	// Prefix is the etcd key prefix. --prefix, SVCKIT_PREFIX.
	Prefix string
	// TLSCert and TLSKey are the server's PEM certificate and key; set,
	// the gRPC server speaks TLS only. --tls-cert, --tls-key,
	// SVCKIT_TLS_CERT, SVCKIT_TLS_KEY.
	TLSCert, TLSKey string
	// TLSCA, with TLSCert and TLSKey, makes the server require client
	// certificates that chain to this PEM CA (mutual TLS). --tls-ca,
	// SVCKIT_TLS_CA.
	TLSCA string
}

// DefaultConfig returns the defaults of every setting.
func DefaultConfig() Config {
	return Config{
		Etcd:            []string{"127.0.0.1:2379"},
		Listen:          "127.0.0.1:0",
		TTL:             10 * time.Second,
		ShutdownTimeout: 15 * time.Second,
		Prefix:          naming.DefaultPrefix,
	}
}

// setting describes one flag and its variable.
type setting struct {
	flag, env, usage string
	get              func(c *Config) string
	set              func(c *Config, v string) error
}

var settings = []setting{
	{"etcd", "SVCKIT_ETCD_ENDPOINTS", "comma-separated etcd endpoints",
		func(c *Config) string { return strings.Join(c.Etcd, ",") },
		func(c *Config, v string) error { c.Etcd = splitList(v); return nil }},
	{"etcd-user", "SVCKIT_ETCD_USER", "etcd user name (password from SVCKIT_ETCD_PASSWORD)",
		func(c *Config) string { return c.EtcdUser },
		func(c *Config, v string) error { c.EtcdUser = v; return nil }},
	{"listen", "SVCKIT_LISTEN", "gRPC listen address (host:port)",
		func(c *Config) string { return c.Listen },
		func(c *Config, v string) error { c.Listen = v; return nil }},
	{"advertise", "SVCKIT_ADVERTISE", "address written to etcd (default: the bound address)",
		func(c *Config) string { return c.Advertise },
		func(c *Config, v string) error { c.Advertise = v; return nil }},
	{"ttl", "SVCKIT_TTL", "etcd lease TTL",
		func(c *Config) string { return c.TTL.String() },
		func(c *Config, v string) error { return parseDuration(v, &c.TTL) }},
	{"admin", "SVCKIT_ADMIN", "admin HTTP address for /metrics, /healthz, /readyz, /debug/pprof (default: off)",
		func(c *Config) string { return c.Admin },
		func(c *Config, v string) error { c.Admin = v; return nil }},
	{"shutdown-timeout", "SVCKIT_SHUTDOWN_TIMEOUT", "bound on the graceful stop",
		func(c *Config) string { return c.ShutdownTimeout.String() },
		func(c *Config, v string) error { return parseDuration(v, &c.ShutdownTimeout) }},
	{"prefix", "SVCKIT_PREFIX", "etcd key prefix",
		func(c *Config) string { return c.Prefix },
		func(c *Config, v string) error { c.Prefix = v; return nil }},
	{"tls-cert", "SVCKIT_TLS_CERT", "server TLS certificate, PEM (with --tls-key: TLS only)",
		func(c *Config) string { return c.TLSCert },
		func(c *Config, v string) error { c.TLSCert = v; return nil }},
	{"tls-key", "SVCKIT_TLS_KEY", "server TLS private key, PEM",
		func(c *Config) string { return c.TLSKey },
		func(c *Config, v string) error { c.TLSKey = v; return nil }},
	{"tls-ca", "SVCKIT_TLS_CA", "CA that client certificates must chain to, PEM (mutual TLS)",
		func(c *Config) string { return c.TLSCA },
		func(c *Config, v string) error { c.TLSCA = v; return nil }},
}

// ApplyEnv overlays the variables that getenv returns (os.Getenv if nil) on
// c. An invalid value is an error naming the variable.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, s := range settings {
		if v := getenv(s.env); v != "" {
			if err := s.set(c, v); err != nil {
				return fmt.Errorf("%s=%q: %w", s.env, v, err)
			}
		}
	}
	c.etcdPassword = getenv("SVCKIT_ETCD_PASSWORD")
	if f := getenv("SVCKIT_ETCD_PASSWORD_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("SVCKIT_ETCD_PASSWORD_FILE: %w", err)
		}
		c.etcdPassword = strings.TrimRight(string(b), "\r\n")
	}
	return nil
}

// RegisterFlags defines the standard flags on fs, bound to c, with c's
// current values as defaults: apply the environment first.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	for _, s := range settings {
		fs.Func(s.flag, fmt.Sprintf("%s (env %s, default %q)", s.usage, s.env, s.get(c)), func(v string) error {
			return s.set(c, v)
		})
	}
}

// ParseConfig returns the defaults, overlaid by the environment from getenv
// (os.Getenv if nil), overlaid by the flags in args, and validated. Flags
// other than the standard ones are refused; services with flags of their own
// use RegisterFlags on their own FlagSet.
func ParseConfig(args []string, getenv func(string) string) (Config, error) {
	c := DefaultConfig()
	if err := c.ApplyEnv(getenv); err != nil {
		return Config{}, err
	}
	fs := flag.NewFlagSet("svckit", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.Validate()
}

// Validate reports the first invalid setting, naming its flag.
func (c Config) Validate() error {
	var errs []error
	if len(c.Etcd) == 0 {
		errs = append(errs, errors.New("--etcd: no endpoints"))
	}
	for _, e := range c.Etcd {
		if !strings.Contains(e, "://") {
			if _, _, err := net.SplitHostPort(e); err != nil {
				errs = append(errs, fmt.Errorf("--etcd %q: %w", e, err))
			}
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: %w", c.Listen, err))
	}
	if c.Advertise != "" {
		if err := naming.ValidateAddr(c.Advertise); err != nil {
			errs = append(errs, fmt.Errorf("--advertise: %w", err))
		}
	}
	if c.TTL < time.Second {
		errs = append(errs, fmt.Errorf("--ttl %s: must be at least 1s", c.TTL))
	}
	if c.Admin != "" {
		if _, _, err := net.SplitHostPort(c.Admin); err != nil {
			errs = append(errs, fmt.Errorf("--admin %q: %w", c.Admin, err))
		}
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout %s: must be positive", c.ShutdownTimeout))
	}
	if err := naming.ValidatePrefix(c.Prefix); err != nil {
		errs = append(errs, fmt.Errorf("--prefix: %w", err))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.TLSCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("--tls-ca needs --tls-cert and --tls-key"))
	}
	return errors.Join(errs...)
}

// String describes c without the etcd password, also for %v and %+v.
func (c Config) String() string {
	pw := ""
	if c.etcdPassword != "" {
		pw = " etcd_password=<set>"
	}
	return fmt.Sprintf("etcd=%v etcd_user=%q%s listen=%s advertise=%q ttl=%s admin=%q shutdown_timeout=%s prefix=%s tls_cert=%q tls_key=%q tls_ca=%q",
		c.Etcd, c.EtcdUser, pw, c.Listen, c.Advertise, c.TTL, c.Admin, c.ShutdownTimeout, c.Prefix, c.TLSCert, c.TLSKey, c.TLSCA)
}

// clientConfig returns the etcd client configuration of c.
// EtcdClientConfig returns the etcd client configuration of c: endpoints,
// user and the password read from the environment (never from a flag).
func (c Config) EtcdClientConfig() naming.ClientConfig {
	return naming.ClientConfig{Endpoints: c.Etcd, Username: c.EtcdUser, Password: c.etcdPassword}
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseDuration(v string, d *time.Duration) error {
	p, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("not a duration (e.g. 10s, 1m): %q", v)
	}
	*d = p
	return nil
}
