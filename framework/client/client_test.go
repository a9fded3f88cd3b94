package client_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

var quiet = slog.New(slog.DiscardHandler)

// newClient returns a Client of etcd c, closed at cleanup.
func newClient(t *testing.T, c *etcdtest.Cluster, opts ...client.Option) *client.Client {
	t.Helper()
	cl, err := client.New(naming.ClientConfig{Endpoints: c.Endpoints()}, append([]client.Option{client.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
	return cl
}

func TestDialWithoutInstancesFailsWithUnavailableNamingTheService(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	start := time.Now()
	_, err := newClient(t, c).Dial(context.Background(), "nobody", client.WithTimeout(500*time.Millisecond))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `"nobody"`) {
		t.Fatalf("have %v, want Unavailable naming the service", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("dial took %s with a 500ms timeout", took)
	}
}

func TestDialSpreadsOverAppInstances(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	var addrs []string
	for range 3 {
		addrs = append(addrs, startProc(t, "--etcd", c.Endpoint(0)).addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc, err := newClient(t, c).Dial(ctx, "testsvc")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	seen := map[string]int{}
	poll.Until(t, 20*time.Second, "every instance reached", func() bool {
		var p peer.Peer
		if err := testsvc.Sleep(ctx, cc, 0, grpc.Peer(&p)); err != nil {
			t.Fatalf("call: %v", err)
		}
		seen[p.Addr.String()]++
		return len(seen) == 3
	})
	for _, a := range addrs {
		if seen[a] == 0 {
			t.Errorf("instance %s never reached", a)
		}
	}
}

func TestKill9UnderLoadFailsNoIdempotentRPC(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	var procs []*proc
	for range 3 {
		procs = append(procs, startProc(t, "--etcd", c.Endpoint(0), "--ttl", "3s"))
	}
	ctx, cc := dialIdempotent(t, c)

	l := startLoad(8, 100_000, func() error {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		return testsvc.Sleep(cctx, cc, 2*time.Millisecond)
	})
	poll.Until(t, 10*time.Second, "load running", func() bool { return l.calls.Load() > 200 })
	before := l.calls.Load()
	procs[0].kill(t)
	poll.Until(t, 20*time.Second, "load after the kill", func() bool { return l.calls.Load() > before+2000 })
	l.stop()
	t.Logf("kill -9 of 1 of 3 under load: %d RPCs, %d failed", l.calls.Load(), l.failures.Load())
	if l.failures.Load() != 0 {
		t.Fatalf("failed idempotent RPCs: have %d, want 0; first: %v", l.failures.Load(), l.firstErr.Load())
	}
}

// lockedBuffer is a log sink that the resolver's goroutines and the test
// may use at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDialReadsOldBalancerNames: the names svckit's policies had before
// the svckit_ prefix are no longer registered with gRPC, but WithBalancer
// still takes them, as the prefixed policy, with a warning.
func TestDialReadsOldBalancerNames(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	startProc(t, "--etcd", c.Endpoint(0))
	cl := newClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct{ old, want string }{
		{"p2c_ewma", lb.P2CEWMA},
		{"random", lb.Random},
		{"consistent_hash", lb.ConsistentHash},
	} {
		var logs lockedBuffer
		cc, err := cl.Dial(ctx, "testsvc", client.WithBalancer(tc.old), client.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		if err != nil {
			t.Fatalf("dial with balancer %s: %v", tc.old, err)
		}
		if err := testsvc.Sleep(ctx, cc, 0); err != nil {
			t.Errorf("call with balancer %s: %v", tc.old, err)
		}
		_ = cc.Close()
		if want := "balancer=" + tc.old + " use=" + tc.want; !strings.Contains(logs.String(), want) {
			t.Errorf("balancer %s: want a warning with %q, have logs:\n%s", tc.old, want, logs.String())
		}
	}
}

// TestDialOptionsAddToTheClients: interceptors given to New run on every
// conn, before those given to one Dial; a Dial's prefix replaces the
// Client's.
func TestDialOptionsAddToTheClients(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	startProc(t, "--etcd", c.Endpoint(0), "--prefix", "other/")
	var mu sync.Mutex
	var have []string
	mark := func(name string) grpc.UnaryClientInterceptor {
		return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			mu.Lock()
			have = append(have, name)
			mu.Unlock()
			return invoker(ctx, method, req, reply, cc, opts...)
		}
	}
	cl := newClient(t, c, client.WithUnaryInterceptor(mark("client")), client.WithTimeout(20*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc, err := cl.Dial(ctx, "testsvc", client.WithPrefix("other/"), client.WithUnaryInterceptor(mark("dial")))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := testsvc.Sleep(ctx, cc, 0); err != nil {
		t.Fatalf("call: %v", err)
	}
	if want := "client dial"; strings.Join(have, " ") != want {
		t.Errorf("interceptors ran as %q, want %q", strings.Join(have, " "), want)
	}
}

func TestNewAndDialRefuseInvalidSettings(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	etcd := naming.ClientConfig{Endpoints: c.Endpoints(), Logger: quiet}
	for _, tc := range []struct {
		name string
		etcd naming.ClientConfig
		opt  client.Option
		want string
	}{
		{"no endpoints", naming.ClientConfig{}, client.WithLogger(quiet), "endpoint"},
		{"zero timeout", etcd, client.WithTimeout(0), "timeout 0s must be positive"},
		{"prefix without slash", etcd, client.WithPrefix("services"), "prefix"},
		{"empty idempotent name", etcd, client.WithIdempotent("/"), `idempotent name "/"`},
		{"nil logger", etcd, client.WithLogger(nil), "nil logger"},
		{"nil credentials", etcd, client.WithTransportCredentials(nil), "nil transport credentials"},
		{"outlier interval", etcd, client.WithOutlierDetection(lb.OutlierDetection{Interval: -time.Second}), "outlier detection: interval -1s: must be positive"},
		{"hedging attempts", etcd, client.WithHedging(time.Millisecond, 6), "want a positive delay and 2 to 5 attempts"},
		{"hedging delay", etcd, client.WithHedging(0, 2), "want a positive delay and 2 to 5 attempts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if cl, err := client.New(tc.etcd, tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
				if cl != nil {
					_ = cl.Close()
				}
				t.Errorf("New: have %v, want an error with %q", err, tc.want)
			}
			if tc.etcd.Endpoints == nil {
				return
			}
			if _, err := newClient(t, c).Dial(context.Background(), "testsvc", tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Dial: have %v, want an error with %q", err, tc.want)
			}
			if _, err := client.Dial(context.Background(), etcd, "testsvc", tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("package Dial: have %v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, err := newClient(t, c).Dial(context.Background(), "bad/name"); err == nil {
		t.Error("Dial of an invalid service name: have nil error")
	}
	if _, err := client.NewFromEtcd(nil); err == nil {
		t.Error("NewFromEtcd(nil): have nil error")
	}
}

// TestCloseIsIdempotentAndLeavesABorrowedClientOpen: Close twice returns
// nil twice, Dial fails after it, and a Client from NewFromEtcd leaves its
// etcd client open.
func TestCloseIsIdempotentAndLeavesABorrowedClientOpen(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	for _, tc := range []struct {
		name string
		new  func() (*client.Client, error)
	}{
		{"New", func() (*client.Client, error) {
			return client.New(naming.ClientConfig{Endpoints: c.Endpoints()}, client.WithLogger(quiet))
		}},
		{"NewFromEtcd", func() (*client.Client, error) { return client.NewFromEtcd(cli, client.WithLogger(quiet)) }},
	} {
		cl, err := tc.new()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for i := range 2 {
			if err := cl.Close(); err != nil {
				t.Errorf("%s: close %d: %v", tc.name, i+1, err)
			}
		}
		if _, err := cl.Dial(context.Background(), "testsvc", client.WithoutWait()); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Errorf("%s: Dial after Close: have %v, want a closed error", tc.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, "any"); err != nil {
		t.Errorf("borrowed etcd client after Close: %v", err)
	}
}

// TestPackageDialClosesItsEtcdClientWithTheConn: the one-call Dial leaves
// no goroutine behind once its conn is closed, whether the conn was used,
// never waited for, or failed to become ready. Not parallel: it counts
// every goroutine of the process.
func TestPackageDialClosesItsEtcdClientWithTheConn(t *testing.T) {
	c := etcdtest.Start(t)
	startProc(t, "--etcd", c.Endpoint(0))
	etcd := naming.ClientConfig{Endpoints: c.Endpoints()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The etcd server's streams of the test server's registrar may start
	// after this; they are the server's, not the client's.
	before := []goleak.Option{goleak.IgnoreCurrent()}
	for _, f := range []string{"(*watchServer).Watch", "(*serverWatchStream).sendLoop", "(*serverWatchStream).recvLoop",
		"(*LeaseServer).LeaseKeepAlive", "(*LeaseServer).leaseKeepAlive"} {
		before = append(before, goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc."+f))
	}

	cc, err := client.Dial(ctx, etcd, "testsvc", client.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if err := testsvc.Sleep(ctx, cc, 0); err != nil {
		t.Fatalf("call: %v", err)
	}
	if err := cc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := goleak.Find(leakOptions(before...)...); err != nil {
		t.Errorf("after closing a used conn: %v", err)
	}

	cc, err = client.Dial(ctx, etcd, "testsvc", client.WithLogger(quiet), client.WithoutWait())
	if err != nil {
		t.Fatal(err)
	}
	if err := cc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := goleak.Find(leakOptions(before...)...); err != nil {
		t.Errorf("after closing an unused conn dialled without wait: %v", err)
	}

	if _, err := client.Dial(ctx, etcd, "nobody", client.WithLogger(quiet), client.WithTimeout(200*time.Millisecond)); status.Code(err) != codes.Unavailable {
		t.Fatalf("dial of nobody: have %v, want Unavailable", err)
	}
	if err := goleak.Find(leakOptions(before...)...); err != nil {
		t.Errorf("after a failed dial: %v", err)
	}
}
