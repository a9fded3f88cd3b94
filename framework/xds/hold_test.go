package xds_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/grpc/resolver"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/xds"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

// restartOnEmptyEtcd serves service "steady" (one live instance) and
// "side" to a grpc-go xDS client of steady, then stops the server, wipes
// etcd and starts a new server on the same address, with hold as its
// hold. It returns a call of steady through the client, the new server,
// etcd and steady's address.
func restartOnEmptyEtcd(t *testing.T, hold time.Duration, rb func(t *testing.T, addr string) resolver.Builder) (callSteady func() (string, error), second *xds.Server, c *etcdtest.Cluster, steady string) {
	t.Helper()
	c = etcdtest.Start(t)
	steady = testsvc.Serve(t)
	put(t, c.Client(t), "steady", steady)
	put(t, c.Client(t), "side", testsvc.Serve(t))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	first, err := xds.New(naming.NewBuilder(c.Client(t), naming.WithResolverLogger(quiet)), xds.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	stop := serveXDS(first, lis)
	poll.Until(t, 10*time.Second, "2 services served", func() bool { return len(first.Services()) == 2 })
	cc := xdsDial(t, rb(t, addr), "steady")
	callSteady = func() (string, error) { return call(cc, 3*time.Second) }
	for i := range 10 {
		if _, err := callSteady(); err != nil {
			t.Fatalf("call %d before the restart: %v", i, err)
		}
	}

	if err := stop(); err != nil {
		t.Fatalf("first xds server: %v", err)
	}
	if err := c.Wipe(); err != nil {
		t.Fatal(err)
	}
	second, err = xds.New(naming.NewBuilder(c.Client(t), naming.WithResolverLogger(quiet)), xds.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	xds.SetTimes(second, hold, 24*time.Hour, time.Hour)
	if lis, err = net.Listen("tcp", addr); err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	stop = serveXDS(second, lis)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("second xds server: %v", err)
		}
	})
	<-second.Ready()
	return callSteady, second, c, steady
}

func TestRestartOnAnEmptyEtcdDeletesNoClientsResources(t *testing.T) {
	call, second, c, steady := restartOnEmptyEtcd(t, time.Minute, xdsResolver)
	if n := len(second.Services()); n != 0 {
		t.Fatalf("restarted server on an empty etcd serves %v", second.Services())
	}
	// The client reconnects and asks for what it has: its listener and
	// cluster are held back, and it keeps calling its instance.
	reconnect := poll.Until(t, 20*time.Second, "client's requests held by the restarted server", func() bool {
		if _, err := call(); err != nil {
			t.Fatalf("call while reconnecting: %v", err)
		}
		return xds.Holding(second) >= 2
	})
	n := 0
	for end := time.Now().Add(3 * time.Second); n < 300 && time.Now().Before(end); n++ {
		if _, err := call(); err != nil {
			t.Fatalf("call %d on the restarted server with an empty etcd: %v", n, err)
		}
		time.Sleep(10 * time.Millisecond) // pace the calls over the window
	}
	// The instance registers again: the held requests are answered.
	put(t, c.Client(t), "steady", steady)
	poll.Until(t, 10*time.Second, "held requests answered", func() bool { return xds.Holding(second) == 0 })
	for i := range 20 {
		if have, err := call(); err != nil || have != steady {
			t.Fatalf("call %d after the instance registered again: %s, %v", i, have, err)
		}
	}
	t.Logf("client reconnected %s after the restart; %d calls in 3 s while the server knew no service, all served",
		reconnect.Round(time.Millisecond), n)
}

func TestHoldEndsAndTheClientLearnsTheServiceIsGone(t *testing.T) {
	call, second, _, _ := restartOnEmptyEtcd(t, 2*time.Second, xdsResolver)
	var err error
	poll.Until(t, 20*time.Second, "listener deleted once the hold ended", func() bool {
		_, err = call()
		return err != nil && strings.Contains(err.Error(), "removed")
	})
	if n := xds.Holding(second); n != 0 {
		t.Fatalf("%d requests still held", n)
	}
	t.Logf("after the hold: %v", err)
}

// TestIgnoreResourceDeletionKeepsTheListener: a client whose bootstrap
// lists ignore_resource_deletion keeps its listener and cluster when the
// server leaves them out, and keeps calling the instances it knows.
func TestIgnoreResourceDeletionKeepsTheListener(t *testing.T) {
	ignoring := func(t *testing.T, addr string) resolver.Builder {
		t.Helper()
		rb, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(fmt.Sprintf(
			`{"xds_servers":[{"server_uri":%q,"channel_creds":[{"type":"insecure"}],"server_features":["xds_v3","ignore_resource_deletion"]}],"node":{"id":%q}}`,
			addr, t.Name())))
		if err != nil {
			t.Fatal(err)
		}
		return rb
	}
	call, second, _, steady := restartOnEmptyEtcd(t, 500*time.Millisecond, ignoring)
	poll.Until(t, 20*time.Second, "hold over", func() bool {
		if _, err := call(); err != nil {
			t.Fatalf("call while reconnecting: %v", err)
		}
		return second.Streams() > 0 && xds.Holding(second) == 0
	})
	for i := range 100 {
		if have, err := call(); err != nil || have != steady {
			t.Fatalf("call %d after the server left the listener out: %s, %v", i, have, err)
		}
		time.Sleep(10 * time.Millisecond) // pace the calls over a second
	}
}

func TestServiceWithoutInstanceIsForgottenAfterAWhile(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	put(t, cli, "gone", "127.0.0.1:1001")
	put(t, cli, "stays", "127.0.0.1:1002")
	xs, err := xds.New(naming.NewBuilder(c.Client(t), naming.WithResolverLogger(quiet)), xds.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	xds.SetTimes(xs, time.Minute, time.Second, 100*time.Millisecond)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := serveXDS(xs, lis)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("xds server: %v", err)
		}
	}()
	poll.Until(t, 10*time.Second, "2 services", func() bool { return len(xs.Services()) == 2 })
	del(t, cli, "gone", "127.0.0.1:1001")
	poll.Until(t, 10*time.Second, "gone without instance", func() bool {
		ins, ok := xs.Services()["gone"]
		return ok && len(ins) == 0
	})
	took := poll.Until(t, 10*time.Second, "gone forgotten", func() bool { _, ok := xs.Services()["gone"]; return !ok })
	if took < 500*time.Millisecond {
		t.Fatalf("forgotten after %s, before its time (1s)", took)
	}
	if ins := xs.Services()["stays"]; len(ins) != 1 {
		t.Fatalf("stays: %v", ins)
	}
}

func TestHoldIsShorterThanGRPCDoesNotExistTimer(t *testing.T) {
	// grpc-go's xDS client fails a resource it never received after 15 s
	// (its default watch expiry): a request held longer fails channels.
	const grpcDoesNotExist = 15 * time.Second
	if xds.HoldUnknown >= grpcDoesNotExist {
		t.Errorf("hold %s is not shorter than grpc-go's does-not-exist timer %s", xds.HoldUnknown, grpcDoesNotExist)
	}
}

// refusingCache is a snapshot cache that refuses the next refuse watches.
type refusingCache struct {
	cachev3.SnapshotCache

	mu      sync.Mutex
	refuse  int
	created int
	cancels []func()
}

func (c *refusingCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, value chan cachev3.Response) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse > 0 {
		c.refuse--
		return nil, errors.New("refused")
	}
	cancel, err := c.SnapshotCache.CreateWatch(req, sub, value)
	if err == nil {
		c.created++
		c.cancels = append(c.cancels, cancel)
	}
	return cancel, err
}

func (c *refusingCache) counts() (created int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.created
}

func TestHandOverFailureLosesNoHeldRequest(t *testing.T) {
	inner := &refusingCache{SnapshotCache: cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)}
	h := xds.NewHoldingCache(inner)
	// Three reconnecting clients ask for Listeners before any snapshot:
	// all three are held.
	const n = 3
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		req := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: "1", ResourceNames: []string{name}}
		cancel, err := h.CreateWatch(req, streamv3.NewSotwSubscription([]string{name}, false), make(chan cachev3.Response, 1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cancel)
	}
	if got := xds.Held(h); got != n {
		t.Fatalf("held %d requests, want %d", got, n)
	}
	inner.mu.Lock()
	inner.refuse = 1
	inner.mu.Unlock()
	err := xds.Release(h)
	if err == nil {
		t.Fatal("release: no error for the refused hand-over")
	}
	created, held := inner.counts(), xds.Held(h)
	t.Logf("release: %v; handed over %d, still held %d", err, created, held)
	if created+held != n {
		t.Fatalf("after a refused hand-over: %d handed over + %d held, want %d: requests lost", created, held, n)
	}
	// The next snapshot hands the refused one over.
	snap, err := cachev3.NewSnapshot("1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SetSnapshot(context.Background(), xds.NodeGroup, snap); err != nil {
		t.Fatal(err)
	}
	if created, held := inner.counts(), xds.Held(h); created != n || held != 0 {
		t.Errorf("after the next snapshot: %d handed over, %d held; want %d, 0", created, held, n)
	}
}
