package client_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

// serveOn serves testsvc and health on lis until stop.
func serveOn(t *testing.T, lis net.Listener) (stop func()) {
	t.Helper()
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	testsvc.Register(s)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	stop = func() { s.Stop(); <-done }
	t.Cleanup(stop)
	return stop
}

// putRecord writes the record of an instance of testsvc at addr with id,
// without a lease: as the record of a killed instance stays until its
// lease expires.
func putRecord(t *testing.T, c *etcdtest.Cluster, addr, id string) {
	t.Helper()
	v, err := naming.Record{Addr: addr, Metadata: naming.Metadata{InstanceID: id}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Client(t).Put(ctx, naming.Key(naming.DefaultPrefix, "testsvc", addr), string(v)); err != nil {
		t.Fatal(err)
	}
}

// An instance killed and started again on its address, its record written
// again over the old one: the conn connects at once, not when gRPC's
// reconnect backoff (here a minute) has passed.
func TestAnInstanceRegisteredAgainIsConnectedAtOnce(t *testing.T) {
	c := etcdtest.Start(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	stop := serveOn(t, lis)
	putRecord(t, c, addr, "first")
	slow := grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: time.Minute, Multiplier: 1, MaxDelay: time.Minute}, MinConnectTimeout: time.Second}
	cc, err := newClient(t, c, client.WithGRPCOption(grpc.WithConnectParams(slow))).Dial(context.Background(), "testsvc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })

	stop()
	poll.Until(t, 10*time.Second, "the conn failing, its reconnect backed off", func() bool {
		return cc.GetState() == connectivity.TransientFailure
	})
	lis, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	serveOn(t, lis)
	putRecord(t, c, addr, "second")
	took := poll.Until(t, 5*time.Second, "a call served by the instance started again", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return testsvc.Sleep(ctx, cc, 0) == nil
	})
	t.Logf("served %s after the record was written again", took.Round(time.Millisecond))
}
