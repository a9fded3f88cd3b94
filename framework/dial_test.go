package framework_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

func TestDialWithoutInstancesFailsWithUnavailableNamingTheService(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	start := time.Now()
	_, err := framework.Dial(context.Background(), "nobody",
		framework.WithEtcd(naming.ClientConfig{Endpoints: c.Endpoints()}),
		framework.WithDialTimeout(500*time.Millisecond))
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
		addrs = append(addrs, startProc(t, nil, "--etcd", c.Endpoint(0)).addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc, err := framework.Dial(ctx, "testsvc", framework.WithEtcd(naming.ClientConfig{Endpoints: c.Endpoints()}))
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
		procs = append(procs, startProc(t, nil, "--etcd", c.Endpoint(0), "--ttl", "3s"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cc, err := framework.Dial(ctx, "testsvc",
		framework.WithEtcd(naming.ClientConfig{Endpoints: c.Endpoints()}),
		framework.WithIdempotent(testsvc.ServiceName))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	l := startLoad(8, 100_000, 0, func() error {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		return testsvc.Sleep(cctx, cc, 2*time.Millisecond)
	})
	poll.Until(t, 10*time.Second, "load running", func() bool { return l.calls.Load() > 200 })
	before := l.calls.Load()
	procs[0].signal(t, syscall.SIGKILL)
	procs[0].wait(t, 10*time.Second)
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
	cfg := framework.DefaultConfig()
	cfg.Etcd = c.Endpoints()
	app, err := framework.New("oldnames", framework.WithConfig(cfg), framework.WithoutSignals(),
		framework.WithPropagationDelay(0), framework.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	testsvc.Register(app.GRPC())
	startApp(t, app)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct{ old, want string }{
		{"p2c_ewma", lb.P2CEWMA},
		{"random", lb.Random},
		{"consistent_hash", lb.ConsistentHash},
	} {
		var logs lockedBuffer
		cc, err := framework.Dial(ctx, "oldnames", framework.WithEtcd(naming.ClientConfig{Endpoints: c.Endpoints()}),
			framework.WithBalancer(tc.old), framework.WithDialLogger(slog.New(slog.NewTextHandler(&logs, nil))))
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
