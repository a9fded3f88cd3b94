package etcdtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startTimeout bounds how long a member may take to become ready.
const startTimeout = 30 * time.Second

// Options configure a Cluster. The zero value is a quiet single member in a
// fresh temporary directory.
type Options struct {
	// Members is the number of members; 0 means 1.
	Members int
	// Dir is the parent of the members' data directories. Empty means a new
	// temporary directory, removed by Close.
	Dir string
	// ClientAddr fixes the client address of a single-member cluster, e.g.
	// "127.0.0.1:2379". Empty means a free port on 127.0.0.1.
	ClientAddr string
	// Logger receives the servers' logs. Nil means no logs.
	Logger *zap.Logger
	// TLS, when set, makes every member serve clients over TLS only
	// (https:// client URLs). Nil means plaintext.
	TLS *TLS
}

// TLS is how the members serve clients over TLS: embed's ClientTLSInfo.
// Certs.ServerTLS fills it from generated certificates.
type TLS struct {
	// CertFile and KeyFile are the server's PEM certificate and key.
	// Required. With ClientCertAuth the certificate must allow client
	// authentication too: etcd's gateway dials its own port with it.
	CertFile, KeyFile string
	// ClientCAFile is the PEM CA that client certificates must chain to.
	ClientCAFile string
	// ClientCertAuth refuses clients without such a certificate.
	ClientCertAuth bool
	// Client is the configuration Cluster.Client uses; nil means
	// Cluster.Client cannot reach the cluster.
	Client *tls.Config
}

// Cluster is a running etcd cluster of one or more embedded members.
type Cluster struct {
	mu      sync.Mutex
	members []*member
	dir     string
	ownDir  bool
	logger  *zap.Logger
	token   string
	initial string
	tls     *TLS
}

type member struct {
	name       string
	dir        string
	clientURL  url.URL
	peerURL    url.URL
	etcd       *embed.Etcd
	generation int
}

// Start starts a single-member cluster that is closed when tb ends.
func Start(tb testing.TB) *Cluster {
	tb.Helper()
	return StartCluster(tb, 1)
}

// StartCluster starts an n-member cluster that is closed when tb ends.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	c, err := New(Options{Members: n, Dir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("etcdtest: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// StartTLS starts a single-member cluster that serves only TLS and
// requires client certificates, with certificates that GenerateCerts wrote
// into a temporary directory; it is closed when tb ends.
func StartTLS(tb testing.TB) (*Cluster, Certs) {
	tb.Helper()
	certs, err := GenerateCerts(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	t, err := certs.ServerTLS(true)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := New(Options{Dir: tb.TempDir(), TLS: t})
	if err != nil {
		tb.Fatalf("etcdtest: %v", err)
	}
	tb.Cleanup(c.Close)
	return c, certs
}

// New starts a cluster and waits until every member is ready and a leader is
// elected. Its ports are free when picked, but another process may bind one
// before etcd does: then New tries again on new ports (in a new
// subdirectory of opts.Dir), up to three times in all.
func New(opts Options) (*Cluster, error) {
	for try := 1; ; try++ {
		c, err := newCluster(opts)
		if err == nil || try == 3 || opts.ClientAddr != "" || !(errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")) {
			return c, err
		}
		if opts.Dir != "" {
			opts.Dir = filepath.Join(opts.Dir, fmt.Sprintf("try%d", try+1))
		}
	}
}

// newCluster is one try of New.
func newCluster(opts Options) (*Cluster, error) {
	n := opts.Members
	if n <= 0 {
		n = 1
	}
	if opts.ClientAddr != "" && n != 1 {
		return nil, errors.New("etcdtest: ClientAddr needs a single member")
	}
	if t := opts.TLS; t != nil && (t.CertFile == "" || t.KeyFile == "" || (t.ClientCertAuth && t.ClientCAFile == "")) {
		return nil, errors.New("etcdtest: TLS needs CertFile and KeyFile, and ClientCertAuth a ClientCAFile")
	}
	c := &Cluster{dir: opts.Dir, logger: opts.Logger, tls: opts.TLS}
	if c.logger == nil {
		c.logger = zap.NewNop()
	}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "etcdtest-")
		if err != nil {
			return nil, fmt.Errorf("etcdtest: %w", err)
		}
		c.dir, c.ownDir = d, true
	}
	c.token = fmt.Sprintf("etcdtest-%d", time.Now().UnixNano())
	var peers []string
	for i := range n {
		m := &member{name: fmt.Sprintf("m%d", i), dir: filepath.Join(c.dir, fmt.Sprintf("m%d", i))}
		caddr := opts.ClientAddr
		if caddr == "" {
			p, err := freePort()
			if err != nil {
				c.cleanupDir()
				return nil, err
			}
			caddr = p
		}
		paddr, err := freePort()
		if err != nil {
			c.cleanupDir()
			return nil, err
		}
		m.clientURL = url.URL{Scheme: "http", Host: caddr}
		if c.tls != nil {
			m.clientURL.Scheme = "https"
		}
		m.peerURL = url.URL{Scheme: "http", Host: paddr}
		c.members = append(c.members, m)
		peers = append(peers, m.name+"="+m.peerURL.String())
	}
	c.initial = strings.Join(peers, ",")

	// Members of a multi-member cluster only become ready together, so start
	// them all before waiting for any.
	errc := make(chan error, n)
	for _, m := range c.members {
		go func() { errc <- c.start(m, "new") }()
	}
	var errs []error
	for range n {
		errs = append(errs, <-errc)
	}
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.waitLeader(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(m *member, state string) error {
	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = m.dir
	cfg.ListenClientUrls = []url.URL{m.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{m.clientURL}
	cfg.ListenPeerUrls = []url.URL{m.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{m.peerURL}
	cfg.InitialCluster = c.initial
	cfg.InitialClusterToken = c.token
	cfg.ClusterState = state
	if t := c.tls; t != nil {
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: t.CertFile, KeyFile: t.KeyFile,
			TrustedCAFile: t.ClientCAFile, ClientCertAuth: t.ClientCertAuth}
	}
	cfg.TickMs = 50
	cfg.ElectionMs = 500
	cfg.UnsafeNoFsync = true
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(c.logger.With(zap.String("member", m.name)))
	cfg.LogLevel = "error"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcdtest: start %s: %w", m.name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("etcdtest: start %s: %w", m.name, err)
	case <-time.After(startTimeout):
		e.Server.Stop()
		e.Close()
		return fmt.Errorf("etcdtest: start %s: not ready after %s", m.name, startTimeout)
	}
	c.mu.Lock()
	m.etcd = e
	m.generation++
	c.mu.Unlock()
	return nil
}

func (c *Cluster) waitLeader() error {
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		if c.Leader() >= 0 {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("etcdtest: no leader elected")
}

// URLs returns the client URLs of every member, running or not:
// https:// ones when the cluster serves TLS.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = m.clientURL.String()
	}
	return out
}

// Endpoints returns the client addresses (host:port) of every member,
// running or not.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = m.clientURL.Host
	}
	return out
}

// Endpoint returns the client address of member i.
func (c *Cluster) Endpoint(i int) string { return c.members[i].clientURL.Host }

// Size returns the number of members.
func (c *Cluster) Size() int { return len(c.members) }

// Client returns a new client of every member, closed when tb ends; of a
// TLS cluster, with its TLS.Client configuration.
func (c *Cluster) Client(tb testing.TB) *clientv3.Client {
	tb.Helper()
	cfg := clientv3.Config{
		Endpoints:   c.Endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	}
	if c.tls != nil {
		cfg.Endpoints, cfg.TLS = c.URLs(), c.tls.Client
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		tb.Fatalf("etcdtest: client: %v", err)
	}
	tb.Cleanup(func() { _ = cli.Close() })
	return cli
}

// Leader returns the index of the member that leads, or -1 when none of the
// running members does.
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.members {
		if m.etcd == nil {
			continue
		}
		s := m.etcd.Server
		if s.Leader() != 0 && s.Leader() == s.MemberID() {
			return i
		}
	}
	return -1
}

// Stop stops member i. Its ports and data stay reserved for Restart.
func (c *Cluster) Stop(i int) {
	if e := c.take(i); e != nil {
		e.Close()
	}
}

// take marks member i stopped and returns its server, if it ran.
func (c *Cluster) take(i int) *embed.Etcd {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.members[i].etcd
	c.members[i].etcd = nil
	return e
}

// Kill stops member i at once, as a crash would: a leader does not hand
// its leadership over first, as Stop lets it. Its ports and data stay
// reserved for Restart.
func (c *Cluster) Kill(i int) {
	if e := c.take(i); e != nil {
		e.Server.HardStop()
		e.Close()
	}
}

// Restart starts a stopped member again on the same ports with its data and,
// for a single member, waits for it to lead.
func (c *Cluster) Restart(i int) error {
	c.Stop(i)
	if err := c.start(c.members[i], "new"); err != nil {
		return err
	}
	if len(c.members) == 1 {
		return c.waitLeader()
	}
	return nil
}

// Wipe replaces a single-member cluster by an empty one on the same ports,
// as after the loss of etcd's data: every key, lease and revision is gone.
func (c *Cluster) Wipe() error {
	if len(c.members) != 1 {
		return errors.New("etcdtest: Wipe needs a single member")
	}
	c.Stop(0)
	m := c.members[0]
	if err := os.RemoveAll(m.dir); err != nil {
		return fmt.Errorf("etcdtest: wipe: %w", err)
	}
	c.mu.Lock()
	c.token = fmt.Sprintf("etcdtest-%d", time.Now().UnixNano())
	c.mu.Unlock()
	if err := c.start(m, "new"); err != nil {
		return err
	}
	return c.waitLeader()
}

// Running reports whether member i is running.
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].etcd != nil
}

// Compact compacts the key space of the cluster up to its current revision.
func (c *Cluster) Compact(ctx context.Context, cli *clientv3.Client) (int64, error) {
	resp, err := cli.Get(ctx, "compact-probe")
	if err != nil {
		return 0, fmt.Errorf("etcdtest: compact: %w", err)
	}
	rev := resp.Header.Revision
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		return 0, fmt.Errorf("etcdtest: compact %d: %w", rev, err)
	}
	return rev, nil
}

// Close stops every member and removes the data it created itself.
func (c *Cluster) Close() {
	for i := range c.members {
		c.Stop(i)
	}
	c.cleanupDir()
}

func (c *Cluster) cleanupDir() {
	if c.ownDir {
		_ = os.RemoveAll(c.dir)
	}
}

// freePort returns a 127.0.0.1 address whose port was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("etcdtest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// PeerLeaks returns the names of the functions at which goroutines of a
// multi-member cluster outlive Close: etcd's peer HTTP transport keeps
// keep-alive connections between members open, and both ends of each live
// in this process. Tests that run goleak beside a multi-member cluster
// ignore these, e.g. with goleak.IgnoreAnyFunction for each name. A single
// member leaves none. Each call returns a new slice.
func PeerLeaks() []string {
	return []string{
		"net/http.(*persistConn).readLoop",
		"net/http.(*persistConn).writeLoop",
		"net/http.(*connReader).backgroundRead",
		"net/http.(*connReader).abortPendingRead",
	}
}

// Count returns how many keys cli sees under prefix, failing tb on error.
func Count(tb testing.TB, cli *clientv3.Client, prefix string) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		tb.Fatalf("etcdtest: count %s: %v", prefix, err)
	}
	return resp.Count
}
