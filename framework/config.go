package framework

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/svckit/svckit/framework/cli"
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
	// EtcdCA is the PEM CA that etcd's server certificate must chain to;
	// set, the client speaks TLS to etcd. An https:// endpoint without it
	// uses the system roots. --etcd-ca, SVCKIT_ETCD_CA.
	EtcdCA string
	// EtcdCert and EtcdKey are the PEM client certificate and key that
	// etcd asks for when it requires client certificates (mutual TLS); both
	// or neither. --etcd-cert, --etcd-key, SVCKIT_ETCD_CERT, SVCKIT_ETCD_KEY.
	EtcdCert, EtcdKey string
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
	// ShutdownTimeout bounds the whole stop: deregistration, drain and the
	// App.Add actors share one deadline, this plus the propagation delay
	// from the stop's start. --shutdown-timeout, SVCKIT_SHUTDOWN_TIMEOUT.
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
	// OverloadCPU is the share of the CPU the process may use (its
	// cgroup's quota, or the machine) above which calls over the adaptive
	// limit on calls in flight are shed with RESOURCE_EXHAUSTED (see
	// package overload); 0 never sheds. --overload-cpu,
	// SVCKIT_OVERLOAD_CPU.
	OverloadCPU float64
}

// DefaultConfig returns the defaults of every setting.
func DefaultConfig() Config {
	return Config{
		Etcd:            []string{"127.0.0.1:2379"},
		Listen:          "127.0.0.1:0",
		TTL:             10 * time.Second,
		ShutdownTimeout: 15 * time.Second,
		Prefix:          naming.DefaultPrefix,
		OverloadCPU:     0.8,
	}
}

// setting describes one flag and its variable; etcd marks the settings
// of the etcd client, which RegisterEtcdFlags defines.
type setting struct {
	flag, env, usage string
	etcd             bool
	get              func(c *Config) string
	set              func(c *Config, v string) error
}

// settings returns a fresh table of every setting, the one source for
// ApplyEnv, RegisterFlags and RegisterEtcdFlags.
func settings() []setting {
	return []setting{
		{"etcd", "SVCKIT_ETCD_ENDPOINTS", "comma-separated etcd endpoints: host:port, http://host:port or https://host:port", true,
			func(c *Config) string { return strings.Join(c.Etcd, ",") },
			func(c *Config, v string) error { c.Etcd = splitList(v); return nil }},
		{"etcd-user", "SVCKIT_ETCD_USER", "etcd user name (password from SVCKIT_ETCD_PASSWORD or SVCKIT_ETCD_PASSWORD_FILE)", true,
			func(c *Config) string { return c.EtcdUser },
			func(c *Config, v string) error { c.EtcdUser = v; return nil }},
		{"etcd-ca", "SVCKIT_ETCD_CA", "CA that etcd's certificate must chain to, PEM: TLS to etcd", true,
			func(c *Config) string { return c.EtcdCA },
			func(c *Config, v string) error { c.EtcdCA = v; return nil }},
		{"etcd-cert", "SVCKIT_ETCD_CERT", "client certificate for etcd, PEM (with --etcd-key: mutual TLS)", true,
			func(c *Config) string { return c.EtcdCert },
			func(c *Config, v string) error { c.EtcdCert = v; return nil }},
		{"etcd-key", "SVCKIT_ETCD_KEY", "client private key for etcd, PEM", true,
			func(c *Config) string { return c.EtcdKey },
			func(c *Config, v string) error { c.EtcdKey = v; return nil }},
		{"listen", "SVCKIT_LISTEN", "gRPC listen address (host:port)", false,
			func(c *Config) string { return c.Listen },
			func(c *Config, v string) error { c.Listen = v; return nil }},
		{"advertise", "SVCKIT_ADVERTISE", "address written to etcd (default: the bound address)", false,
			func(c *Config) string { return c.Advertise },
			func(c *Config, v string) error { c.Advertise = v; return nil }},
		{"ttl", "SVCKIT_TTL", "etcd lease TTL", false,
			func(c *Config) string { return c.TTL.String() },
			func(c *Config, v string) error { return parseDuration(v, &c.TTL) }},
		{"admin", "SVCKIT_ADMIN", "admin HTTP address for /metrics, /healthz, /readyz, /debug/pprof (default: off)", false,
			func(c *Config) string { return c.Admin },
			func(c *Config, v string) error { c.Admin = v; return nil }},
		{"shutdown-timeout", "SVCKIT_SHUTDOWN_TIMEOUT", "bound on the whole stop (deregistration, drain, actors), after the propagation delay", false,
			func(c *Config) string { return c.ShutdownTimeout.String() },
			func(c *Config, v string) error { return parseDuration(v, &c.ShutdownTimeout) }},
		{"prefix", "SVCKIT_PREFIX", "etcd key prefix", true,
			func(c *Config) string { return c.Prefix },
			func(c *Config, v string) error { c.Prefix = v; return nil }},
		{"tls-cert", "SVCKIT_TLS_CERT", "server TLS certificate, PEM (with --tls-key: TLS only)", false,
			func(c *Config) string { return c.TLSCert },
			func(c *Config, v string) error { c.TLSCert = v; return nil }},
		{"tls-key", "SVCKIT_TLS_KEY", "server TLS private key, PEM", false,
			func(c *Config) string { return c.TLSKey },
			func(c *Config, v string) error { c.TLSKey = v; return nil }},
		{"tls-ca", "SVCKIT_TLS_CA", "CA that client certificates must chain to, PEM (mutual TLS)", false,
			func(c *Config) string { return c.TLSCA },
			func(c *Config, v string) error { c.TLSCA = v; return nil }},
		{"overload-cpu", "SVCKIT_OVERLOAD_CPU", "share of the allowed CPU above which calls over the adaptive limit are shed (0: never shed)", false,
			func(c *Config) string { return strconv.FormatFloat(c.OverloadCPU, 'g', -1, 64) },
			func(c *Config, v string) error { return parseFloat(v, &c.OverloadCPU) }},
	}
}

// ApplyEnv overlays the variables that getenv returns (os.Getenv if nil) on
// c. An invalid value is an error naming the variable.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, s := range settings() {
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
func (c *Config) RegisterFlags(fs *flag.FlagSet) { c.register(fs, false) }

// RegisterEtcdFlags defines only the flags of the etcd client (--etcd,
// --etcd-user, --etcd-ca, --etcd-cert, --etcd-key and --prefix) on fs, as
// RegisterFlags does: for commands that talk to etcd but serve nothing.
func (c *Config) RegisterEtcdFlags(fs *flag.FlagSet) { c.register(fs, true) }

func (c *Config) register(fs *flag.FlagSet, etcdOnly bool) {
	for _, s := range settings() {
		if etcdOnly && !s.etcd {
			continue
		}
		fs.Func(s.flag, fmt.Sprintf("%s (env %s, default %q)", s.usage, s.env, s.get(c)), func(v string) error {
			return s.set(c, v)
		})
	}
}

// ParseConfig returns the defaults, overlaid by the environment from getenv
// (os.Getenv if nil), overlaid by the flags in args, and validated. A bad
// command line is a *cli.UsageError; -h prints the usage to stdout and
// returns flag.ErrHelp (see cli.Parse). Flags
// other than the standard ones are refused; services with flags of their own
// use RegisterFlags on their own FlagSet.
func ParseConfig(args []string, getenv func(string) string) (Config, error) {
	c := DefaultConfig()
	if err := c.ApplyEnv(getenv); err != nil {
		return Config{}, err
	}
	fs := flag.NewFlagSet(filepath.Base(os.Args[0]), flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := cli.Parse(fs, args, os.Stdout); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, &cli.UsageError{Cmd: fs.Name(), Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return c, c.Validate()
}

// Validate reports every invalid setting, one a line, each naming its
// flag. It reads the TLS files named, so that an unreadable one fails here
// rather than at the first connection.
func (c Config) Validate() error {
	errs := c.validateEtcd()
	if len(errs) == 0 {
		if _, err := c.etcdTLS(); err != nil {
			errs = append(errs, err)
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
	if !(c.OverloadCPU >= 0 && c.OverloadCPU <= 1) { // NaN too
		errs = append(errs, fmt.Errorf("--overload-cpu %v: want 0 (never shed) to 1", c.OverloadCPU))
	}
	return errors.Join(errs...)
}

// validateEtcd reports the invalid etcd client settings, each naming its
// flag; it reads no file.
func (c Config) validateEtcd() []error {
	var errs []error
	if len(c.Etcd) == 0 {
		errs = append(errs, errors.New("--etcd: no endpoints"))
	}
	var plain string // an http:// endpoint, if any
	for _, e := range c.Etcd {
		scheme, hostport, found := strings.Cut(e, "://")
		if !found {
			scheme, hostport = "", e
		}
		switch scheme {
		case "", "http", "https":
			if _, _, err := net.SplitHostPort(hostport); err != nil {
				errs = append(errs, fmt.Errorf("--etcd %q: %w", e, err))
			}
		case "unix", "unixs": // a socket path
		default:
			errs = append(errs, fmt.Errorf("--etcd %q: scheme %s: want host:port, http:// or https://", e, scheme))
		}
		if scheme == "http" && plain == "" {
			plain = e
		}
	}
	// etcd's client dials every endpoint with the scheme of the first: an
	// http:// endpoint beside TLS would send everything in clear, or
	// nothing.
	if plain != "" && c.etcdWantsTLS() {
		errs = append(errs, fmt.Errorf("--etcd %q: http:// is plaintext, but TLS is asked for (an https:// endpoint or --etcd-ca, --etcd-cert): use https:// or host:port", plain))
	}
	if (c.EtcdCert == "") != (c.EtcdKey == "") {
		errs = append(errs, errors.New("--etcd-cert and --etcd-key go together"))
	}
	return errs
}

// etcdWantsTLS reports whether the etcd client speaks TLS: with a CA, a
// client certificate or an https:// endpoint.
func (c Config) etcdWantsTLS() bool {
	if c.EtcdCA != "" || c.EtcdCert != "" || c.EtcdKey != "" {
		return true
	}
	for _, e := range c.Etcd {
		if strings.HasPrefix(e, "https://") || strings.HasPrefix(e, "unixs://") {
			return true
		}
	}
	return false
}

// String describes c without the etcd password, also for %v and %+v.
func (c Config) String() string {
	pw := ""
	if c.etcdPassword != "" {
		pw = " etcd_password=<set>"
	}
	return fmt.Sprintf("etcd=%v etcd_user=%q%s etcd_ca=%q etcd_cert=%q etcd_key=%q listen=%s advertise=%q ttl=%s admin=%q shutdown_timeout=%s prefix=%s tls_cert=%q tls_key=%q tls_ca=%q overload_cpu=%v",
		c.Etcd, c.EtcdUser, pw, c.EtcdCA, c.EtcdCert, c.EtcdKey, c.Listen, c.Advertise, c.TTL, c.Admin, c.ShutdownTimeout, c.Prefix, c.TLSCert, c.TLSKey, c.TLSCA, c.OverloadCPU)
}

// EtcdClientConfig returns the etcd client configuration of c: endpoints,
// user, the password read from the environment (never from a flag), and
// TLS from --etcd-ca, --etcd-cert and --etcd-key, or with the system roots
// for https:// endpoints without --etcd-ca. It fails as Validate does on
// the etcd settings: a certificate without its key, an unreadable file, an
// http:// endpoint beside TLS.
func (c Config) EtcdClientConfig() (naming.ClientConfig, error) {
	if err := errors.Join(c.validateEtcd()...); err != nil {
		return naming.ClientConfig{}, err
	}
	tc, err := c.etcdTLS()
	if err != nil {
		return naming.ClientConfig{}, err
	}
	return naming.ClientConfig{Endpoints: c.Etcd, Username: c.EtcdUser, Password: c.etcdPassword, TLS: tc}, nil
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

func parseFloat(v string, f *float64) error {
	p, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return fmt.Errorf("not a number (e.g. 0.8): %q", v)
	}
	*f = p
	return nil
}

func parseDuration(v string, d *time.Duration) error {
	p, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("not a duration (e.g. 10s, 1m): %q", v)
	}
	*d = p
	return nil
}
