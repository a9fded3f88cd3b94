package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/proc"
	"github.com/svckit/svckit/internal/testsvc"
)

const (
	service = "chaos"
	prefix  = naming.DefaultPrefix + service + "/"
	ttl     = 2 * time.Second
)

// server is the chaos server running as a child process.
type server struct {
	*proc.Proc
	addr, admin string
}

// startServer starts a chaos server registered in etcd at endpoints, with
// a 2s TTL and an admin port, and waits until it serves; env injects
// faults (see testdata/chaosserver). It is killed at cleanup if running.
func startServer(t *testing.T, endpoints string, env ...string) *server {
	t.Helper()
	s := launchServer(t, endpoints, nil, env...)
	if err := s.waitServing(); err != nil {
		t.Fatalf("chaos server: %v", err)
	}
	return s
}

// launchServer starts a chaos server as startServer does, with more flags
// (which win over the defaults), and does not wait for it.
func launchServer(t *testing.T, endpoints string, flags []string, env ...string) *server {
	t.Helper()
	args := append([]string{"--etcd", endpoints, "--ttl", ttl.String(), "--admin", "127.0.0.1:0", "--shutdown-timeout", "10s"}, flags...)
	return &server{Proc: proc.StartT(t, serverBin, args, env)}
}

// waitServing waits up to 30s until s serves, and sets its addresses.
func (s *server) waitServing() error {
	var err error
	s.addr, s.admin, err = s.WaitServing(30 * time.Second)
	return err
}

// term stops s with SIGTERM and fails t unless it exits 0 within 20s.
func (s *server) term(t *testing.T) {
	t.Helper()
	if err := s.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := s.Wait(20 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("server %s: exit %d, %v:\n%s", s.addr, code, err, s.Output())
	}
}

// metric reads one unlabelled metric from s's admin /metrics.
func (s *server) metric(name string) (float64, bool) {
	resp, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f, true
			}
		}
	}
	return 0, false
}

// records returns the addresses registered in etcd under the service's
// prefix, failing t on an error.
func records(t *testing.T, cli *clientv3.Client) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("etcd get %s: %v", prefix, err)
	}
	out := make(map[string]bool)
	for _, kv := range resp.Kvs {
		if r, err := naming.DecodeRecord(kv.Value); err == nil {
			out[r.Addr] = true
		}
	}
	return out
}

// conn is a client.Dial connection whose resolver updates and call
// attempts are recorded.
type conn struct {
	*grpc.ClientConn
	rec      *recorder
	attempts *attempts
}

var clientSeq atomic.Int64

// dial returns a client.Dial connection through etcd to the chaos service,
// balanced by policy (a recorded wrap of it), retrying the test service's
// calls on UNAVAILABLE, its resolver's logs discarded unless opts say
// otherwise.
func dial(t *testing.T, policy string, etcd naming.ClientConfig, opts ...client.Option) *conn {
	t.Helper()
	id := fmt.Sprintf("chaos-client-%d", clientSeq.Add(1))
	c := &conn{rec: newRecorder(id), attempts: &attempts{last: map[string]time.Time{}, n: map[string]int64{}}}
	opts = append([]client.Option{
		client.WithBalancer(recordedName(policy)),
		client.WithLogger(quiet),
		client.WithIdempotent(testsvc.ServiceName),
		client.WithTimeout(10 * time.Second),
		client.WithGRPCOption(grpc.WithUserAgent(id), grpc.WithStatsHandler(c.attempts)),
	}, opts...)
	cc, err := client.Dial(context.Background(), etcd, service, opts...)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.ClientConn = cc
	t.Cleanup(func() { _ = cc.Close(); forget(id) })
	return c
}

// converge waits up to d until c's balancer has exactly the endpoints
// etcd holds, and returns how long that took.
func (c *conn) converge(t *testing.T, cli *clientv3.Client, d time.Duration) time.Duration {
	t.Helper()
	var want, have map[string]bool
	start := time.Now()
	for {
		want, have = records(t, cli), c.rec.endpoints()
		if maps.Equal(want, have) {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("client endpoints %v did not converge to etcd's %v within %s", keys(have), keys(want), d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitEndpoints waits until c's balancer has n endpoints.
func (c *conn) waitEndpoints(t *testing.T, n int, d time.Duration) {
	t.Helper()
	poll.Until(t, d, fmt.Sprintf("%d endpoints at the balancer", n), func() bool { return c.rec.size() == n })
}

func keys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }

// load is closed-loop load: workers call one after another, each at most
// max times, until stopped; every call's outcome and backend is counted.
type load struct {
	calls, failures atomic.Int64
	mu              sync.Mutex
	backends        map[string]int64
	errs            []string
	done            chan struct{}
	wg              sync.WaitGroup
}

// startLoad runs call from workers goroutines; call reports the backend
// that answered through p.
func startLoad(workers, max int, call func(ctx context.Context, p *peer.Peer) error) *load {
	l := &load{backends: map[string]int64{}, done: make(chan struct{})}
	for range workers {
		l.wg.Go(func() {
			for range max {
				select {
				case <-l.done:
					return
				default:
				}
				var p peer.Peer
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := call(ctx, &p)
				cancel()
				l.calls.Add(1)
				l.mu.Lock()
				if err != nil {
					l.failures.Add(1)
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err.Error())
					}
				} else if p.Addr != nil {
					l.backends[p.Addr.String()]++
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// sleepLoad is load of Sleep calls of d on c.
func sleepLoad(c *conn, workers, max int, d time.Duration) *load {
	return startLoad(workers, max, func(ctx context.Context, p *peer.Peer) error {
		return testsvc.Sleep(ctx, c, d, grpc.Peer(p))
	})
}

// waitCalls waits until at least n more calls than now have been made.
func (l *load) waitCalls(t *testing.T, n int64, d time.Duration) {
	t.Helper()
	base := l.calls.Load()
	poll.Until(t, d, fmt.Sprintf("%d more calls", n), func() bool { return l.calls.Load() >= base+n })
}

// stop ends the load and waits for its workers.
func (l *load) stop() {
	close(l.done)
	l.wg.Wait()
}

// firstErrors returns the first errors seen.
func (l *load) firstErrors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

// attempts is a stats.Handler that counts every call attempt's backend
// and the time of its last attempt: the traffic a backend was sent,
// retried attempts included.
type attempts struct {
	mu   sync.Mutex
	n    map[string]int64
	last map[string]time.Time
}

func (a *attempts) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (a *attempts) HandleRPC(_ context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.OutHeader); ok && h.Client && h.RemoteAddr != nil {
		addr := h.RemoteAddr.String()
		now := time.Now()
		a.mu.Lock()
		a.n[addr]++
		a.last[addr] = now
		a.mu.Unlock()
	}
}
func (a *attempts) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (a *attempts) HandleConn(context.Context, stats.ConnStats)                       {}

// snapshot returns the attempts per backend so far.
func (a *attempts) snapshot() map[string]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.n)
}

// lastAt returns the time of the last attempt sent to addr.
func (a *attempts) lastAt(addr string) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last[addr]
}

// share returns addr's part of the attempts made between two snapshots.
func share(before, after map[string]int64, addr string) (float64, int64) {
	var total int64
	for k, v := range after {
		total += v - before[k]
	}
	if total == 0 {
		return 0, 0
	}
	return float64(after[addr]-before[addr]) / float64(total), total
}

// recorder sees every resolver update that reaches a client's balancer.
type recorder struct {
	id       string
	mu       sync.Mutex
	updates  int
	last     map[string]bool
	removals int // endpoints that an update dropped
	minSize  int
}

var recorders sync.Map // id → *recorder

func newRecorder(id string) *recorder {
	r := &recorder{id: id, last: map[string]bool{}, minSize: -1}
	recorders.Store(id, r)
	return r
}

func forget(id string) { recorders.Delete(id) }

func (r *recorder) endpoints() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.last)
}

func (r *recorder) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.last)
}

// counts returns the updates and removals seen so far, and the smallest
// endpoint set of an update.
func (r *recorder) counts() (updates, removals, minSize int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.updates, r.removals, r.minSize
}

// reset starts counting afresh from the current endpoint set.
func (r *recorder) reset() {
	r.mu.Lock()
	r.updates, r.removals, r.minSize = 0, 0, -1
	r.mu.Unlock()
}

func (r *recorder) observe(s balancer.ClientConnState) {
	set := make(map[string]bool)
	for _, ep := range s.ResolverState.Endpoints {
		if len(ep.Addresses) > 0 {
			set[ep.Addresses[0].Addr] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates++
	for a := range r.last {
		if !set[a] {
			r.removals++
		}
	}
	if r.minSize < 0 || len(set) < r.minSize {
		r.minSize = len(set)
	}
	r.last = set
}

// recordedName is the name under which policy is registered wrapped by a
// recorder. The recorder of a connection is found by the connection's
// user agent, which dial sets to the client's id.
func recordedName(policy string) string { return "chaos_recorded_" + policy }

func init() {
	for _, p := range []string{lb.P2CEWMA, roundrobin.Name, "none"} {
		balancer.Register(recordingBuilder{child: p})
	}
}

type recordingBuilder struct{ child string }

func (b recordingBuilder) Name() string { return recordedName(b.child) }

func (b recordingBuilder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	if p, ok := balancer.Get(b.child).(balancer.ConfigParser); ok {
		return p.ParseConfig(js)
	}
	return nil, nil
}

func (b recordingBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	id, _, _ := strings.Cut(opts.CustomUserAgent, " ")
	r, ok := recorders.Load(id)
	if !ok {
		r = newRecorder(id) // a connection not made by dial
	}
	rb := &recordingBalancer{rec: r.(*recorder), cc: cc}
	if child := balancer.Get(b.child); child != nil {
		rb.child = child.Build(cc, opts)
	}
	return rb
}

// recordingBalancer records each update and hands everything to its child;
// with no child it picks nothing (for resolver-only measurements).
type recordingBalancer struct {
	rec   *recorder
	cc    balancer.ClientConn
	child balancer.Balancer
}

func (b *recordingBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	b.rec.observe(s)
	if b.child == nil {
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.TransientFailure,
			Picker: base{status.Error(codes.Unavailable, "chaos: recording only")}})
		return nil
	}
	return b.child.UpdateClientConnState(s)
}

func (b *recordingBalancer) ResolverError(err error) {
	if b.child != nil {
		b.child.ResolverError(err)
	}
}

func (b *recordingBalancer) UpdateSubConnState(sc balancer.SubConn, s balancer.SubConnState) {
	if b.child != nil {
		//lint:ignore SA1019 part of the interface; delegated as is.
		b.child.UpdateSubConnState(sc, s)
	}
}

func (b *recordingBalancer) ExitIdle() {
	if b.child != nil {
		b.child.ExitIdle()
	}
}

func (b *recordingBalancer) Close() {
	if b.child != nil {
		b.child.Close()
	}
}

type base struct{ err error }

func (p base) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{}, p.err
}

// logCounter is a slog.Handler that counts records by message.
type logCounter struct {
	mu   sync.Mutex
	msgs map[string]int
	keys map[string]int
}

func newLogCounter() *logCounter {
	return &logCounter{msgs: map[string]int{}, keys: map[string]int{}}
}

func (h *logCounter) logger() *slog.Logger { return slog.New(h) }

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs[r.Message]++
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "key" {
			h.keys[a.Value.String()]++
		}
		return true
	})
	return nil
}
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCounter) WithGroup(string) slog.Handler      { return h }

func (h *logCounter) total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, v := range h.msgs {
		n += v
	}
	return n
}
