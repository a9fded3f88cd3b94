package xds_test

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/xds"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

// xdsResolver returns a gRPC xDS resolver with its own xDS client, talking
// to the management server at addr: a plain grpc-go client, no svckit code.
func xdsResolver(t *testing.T, addr string) resolver.Builder {
	t.Helper()
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(fmt.Sprintf(
		`{"xds_servers":[{"server_uri":%q,"channel_creds":[{"type":"insecure"}],"server_features":["xds_v3"]}],"node":{"id":%q}}`,
		addr, t.Name())))
	if err != nil {
		t.Fatal(err)
	}
	return rb
}

// xdsDial returns a client of xds:///service through rb.
func xdsDial(t *testing.T, rb resolver.Builder, service string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("xds:///"+service, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// call makes one short call on cc and returns the address that served it.
func call(cc *grpc.ClientConn, d time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var p peer.Peer
	if err := testsvc.Sleep(ctx, cc, 0, grpc.Peer(&p)); err != nil {
		return "", err
	}
	return p.Addr.String(), nil
}

// put writes the record of service at addr, as a Registrar would but
// without a lease, so that it outlives an etcd restart.
func put(t *testing.T, cli *clientv3.Client, service, addr string) {
	t.Helper()
	v, err := naming.Record{Addr: addr}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, naming.Key(naming.DefaultPrefix, service, addr), string(v)); err != nil {
		t.Fatalf("put %s %s: %v", service, addr, err)
	}
}

func del(t *testing.T, cli *clientv3.Client, service, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Delete(ctx, naming.Key(naming.DefaultPrefix, service, addr)); err != nil {
		t.Fatalf("delete %s %s: %v", service, addr, err)
	}
}

// serveXDS serves xs on lis until the returned stop is called; stop
// returns Serve's error.
func serveXDS(xs *xds.Server, lis net.Listener) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- xs.Serve(ctx, lis) }()
	return func() error { cancel(); return <-done }
}

func TestClientOfOneServiceWorksWithFiveRegistered(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	addrs := map[string]string{}
	for i := range 5 {
		svc := fmt.Sprintf("svc%d", i)
		addrs[svc] = testsvc.Serve(t)
		put(t, cli, svc, addrs[svc])
	}
	xs, addr := startXDS(t, c)
	poll.Until(t, 10*time.Second, "5 services served", func() bool { return len(xs.Services()) == 5 })

	// Two channels on one xDS client: its requests name two of the five.
	rb := xdsResolver(t, addr)
	for _, svc := range []string{"svc2", "svc4"} {
		cc := xdsDial(t, rb, svc)
		for i := range 20 {
			have, err := call(cc, 10*time.Second)
			if err != nil {
				t.Fatalf("%s: call %d: %v", svc, i, err)
			}
			if want := addrs[svc]; have != want {
				t.Fatalf("%s: call %d served by %s, want %s", svc, i, have, want)
			}
		}
	}
}

func TestServiceWithoutInstanceHasNoEndpointsNotNoCluster(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	solo := testsvc.Serve(t)
	put(t, cli, "solo", solo)
	put(t, cli, "other", testsvc.Serve(t))
	xs, addr := startXDS(t, c)
	poll.Until(t, 10*time.Second, "2 services served", func() bool { return len(xs.Services()) == 2 })
	cc := xdsDial(t, xdsResolver(t, addr), "solo")
	if _, err := call(cc, 10*time.Second); err != nil {
		t.Fatalf("call with an instance: %v", err)
	}

	// The only instance deregisters: no endpoints, but the listener and
	// cluster stay.
	del(t, cli, "solo", solo)
	// gRPC's wording for a cluster without endpoints, as opposed to a
	// deleted listener or cluster ("… has been removed", "unknown cluster").
	noEndpoints := regexp.MustCompile(`no targets to pick from|no children|no endpoints`)
	var err error
	for end := time.Now().Add(10 * time.Second); ; {
		_, err = call(cc, 2*time.Second)
		if status.Code(err) == codes.Unavailable && noEndpoints.MatchString(err.Error()) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("call without instance: want Unavailable with no endpoints, have %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("call without instance: %v", err)
	if ins, ok := xs.Services()["solo"]; !ok || len(ins) != 0 {
		t.Fatalf("solo served as %v, %t: want no instance", ins, ok)
	}

	put(t, cli, "solo", solo)
	poll.Until(t, 10*time.Second, "calls succeed once the instance is back", func() bool {
		_, err := call(cc, 2*time.Second)
		return err == nil
	})
}

func TestClientKeepsWorkingAcrossXDSRestartWhileEtcdIsDown(t *testing.T) {
	c := etcdtest.Start(t)
	live := registerSteadyAndSide(t, c.Client(t))
	newServer := func() *xds.Server {
		xs, err := xds.New(naming.NewBuilder(c.Client(t), naming.WithResolverLogger(quiet)), xds.WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		return xs
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	first := newServer()
	stop := serveXDS(first, lis)
	poll.Until(t, 10*time.Second, "5 services served", func() bool { return len(first.Services()) == 5 })
	cc := xdsDial(t, xdsResolver(t, addr), "steady")
	calls := func(n int, what string) {
		t.Helper()
		for i := range n {
			have, err := call(cc, 5*time.Second)
			if err != nil {
				t.Fatalf("%s: call %d: %v", what, i, err)
			}
			if !live[have] {
				t.Fatalf("%s: call %d served by %s, not a live instance", what, i, have)
			}
		}
	}
	calls(20, "before")

	c.Stop(0)
	if err := stop(); err != nil {
		t.Fatalf("first xds server: %v", err)
	}
	second := newServer()
	lis, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	stop = serveXDS(second, lis)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("second xds server: %v", err)
		}
	}()
	// The client is back on the restarted server, which has heard nothing
	// from etcd: it must serve nothing rather than an empty world.
	reconnect := poll.Until(t, 20*time.Second, "client reconnected to the restarted server", func() bool {
		calls(1, "reconnecting")
		return second.Streams() > 0
	})
	end := time.Now().Add(3 * time.Second)
	n := 0
	for ; n < 300 && time.Now().Before(end); n++ {
		calls(1, "etcd down, xds restarted")
		time.Sleep(10 * time.Millisecond) // pace the calls over the window
	}
	if n := len(second.Services()); n != 0 {
		t.Fatalf("restarted server serves %d services while etcd is down", n)
	}

	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	served := poll.Until(t, 20*time.Second, "restarted server serves etcd's services", func() bool { return len(second.Services()) == 5 })
	calls(20, "after")
	t.Logf("client back on the restarted xDS server %s after it started; %d calls succeeded while it served nothing; served again %s after etcd's restart",
		reconnect.Round(time.Millisecond), n, served.Round(time.Millisecond))
}

// registerSteadyAndSide serves and registers two instances of "steady" and
// one of each of "side0" to "side3", and returns the addresses of
// steady's.
func registerSteadyAndSide(t *testing.T, cli *clientv3.Client) map[string]bool {
	t.Helper()
	live := map[string]bool{}
	for range 2 {
		a := testsvc.Serve(t)
		live[a] = true
		put(t, cli, "steady", a)
	}
	for i := range 4 {
		put(t, cli, fmt.Sprintf("side%d", i), testsvc.Serve(t))
	}
	return live
}
