package proxy

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"

	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/logsink"
)

func TestForwardedDropsTransportHeaders(t *testing.T) {
	in := metadata.MD{
		":authority": {"proxy:8443"}, "content-type": {"application/grpc+proto"}, "user-agent": {"ua"},
		"te": {"trailers"}, "grpc-timeout": {"1S"}, "grpc-encoding": {"gzip"}, "grpc-accept-encoding": {"gzip"},
		"connection": {"x"}, "traceparent": {"00-a-b-01"}, "tracestate": {"k=v"}, "baggage": {"u=1"},
		"authorization": {"Bearer x"}, "x-bin-bin": {"\x00\x01"}, "x-multi": {"a", "b"},
	}
	have := slices.Sorted(maps.Keys(forwarded(in)))
	want := []string{"authorization", "baggage", "traceparent", "tracestate", "x-bin-bin", "x-multi"}
	if !slices.Equal(have, want) {
		t.Fatalf("forwarded keys: have %v, want %v", have, want)
	}
	if v := forwarded(in)["x-multi"]; !slices.Equal(v, []string{"a", "b"}) {
		t.Fatalf("x-multi: have %v", v)
	}
}

func TestContentSubtype(t *testing.T) {
	for ct, want := range map[string]string{
		"application/grpc": "", "application/grpc+proto": "proto", "application/grpc+json": "json",
		"Application/GRPC+JSON": "json", "application/grpc+proto; charset=utf-8": "proto", "text/plain": "",
		"application/grpc;foo": "",
	} {
		if have := contentSubtype(metadata.Pairs("content-type", ct)); have != want {
			t.Errorf("%q: have %q, want %q", ct, have, want)
		}
	}
	if have := contentSubtype(metadata.MD{}); have != "" {
		t.Errorf("none: have %q", have)
	}
}

func TestServiceOf(t *testing.T) {
	for _, tc := range []struct {
		method, want string
		ok           bool
	}{
		{"/pkg.Svc/Method", "pkg.Svc", true},
		{"/fileserver.v1.FileService/Download", "fileserver.v1.FileService", true},
		{"/pkg.Svc/", "", false}, {"/pkg.Svc", "", false}, {"//Method", "", false},
		{"/a/b/c", "", false}, {"", "", false},
	} {
		have, ok := serviceOf(tc.method)
		if ok != tc.ok || (ok && have != tc.want) {
			t.Errorf("%q: have %q, %t; want %q, %t", tc.method, have, ok, tc.want, tc.ok)
		}
	}
}

// TestBackendsBound: at the bound, the idle connection used least recently
// makes room; with none idle, acquire fails; close closes everything.
func TestBackendsBound(t *testing.T) {
	dials := 0
	b := newBackends(2, func(_ context.Context, svc string) (*grpc.ClientConn, error) {
		dials++
		// No I/O until a call: a real connection that never dials.
		return grpc.NewClient("passthrough:///127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	})
	ctx := context.Background()
	acquire := func(svc string) *backend {
		t.Helper()
		be, err := b.acquire(ctx, svc)
		if err != nil {
			t.Fatalf("acquire %s: %v", svc, err)
		}
		return be
	}
	a := acquire("a")
	bb := acquire("b")
	if again := acquire("a"); again != a || dials != 2 {
		t.Fatalf("second acquire of a: a new connection (%d dials)", dials)
	}
	if _, err := b.acquire(ctx, "c"); !errors.Is(err, errFull) {
		t.Fatalf("c with a and b in use: have %v, want errFull", err)
	}
	b.release(a)
	b.release(a)
	c := acquire("c") // a is idle: evicted
	if s := a.cc.GetState(); s != connectivity.Shutdown {
		t.Fatalf("evicted a: state %s, want SHUTDOWN", s)
	}
	if b.len() != 2 {
		t.Fatalf("cached: have %d, want 2", b.len())
	}
	b.release(bb)
	b.release(c)
	if err := b.close(); err != nil {
		t.Fatal(err)
	}
	for _, be := range []*backend{bb, c} {
		if s := be.cc.GetState(); s != connectivity.Shutdown {
			t.Fatalf("%s after close: state %s", be.service, s)
		}
	}
	if _, err := b.acquire(ctx, "d"); !errors.Is(err, errClosed) {
		t.Fatalf("acquire after close: have %v, want errClosed", err)
	}
}

// endpoint builds a resolver endpoint as the naming resolver does: with its
// etcd key and metadata.
func endpoint(key string, services ...string) resolver.Endpoint {
	return resolver.Endpoint{Addresses: []resolver.Address{{Addr: key}},
		Attributes: attributes.New(naming.AttrKey, key).WithValue(naming.AttrMetadata, naming.Metadata{Services: services})}
}

// TestRoutesTable: each gRPC service goes to the svckit service with the
// most instances publishing it, a conflict is logged once, malformed keys
// are skipped, and a route whose instances are gone stays known.
func TestRoutesTable(t *testing.T) {
	logs := &logsink.Buffer{}
	r := newRoutes("services/", slog.New(slog.NewTextHandler(logs, nil)))
	state := resolver.State{Endpoints: []resolver.Endpoint{
		endpoint("services/a/127.0.0.1:1", "x.X"),
		endpoint("services/a/127.0.0.1:2", "x.X"),
		endpoint("services/b/127.0.0.1:3", "x.X", "y.Y"),
		endpoint("elsewhere/c/127.0.0.1:4", "z.Z"),
	}}
	for range 2 {
		if err := r.UpdateState(state); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"x.X": "a", "y.Y": "b"}
	if have := r.snapshot(); !maps.Equal(have, want) {
		t.Fatalf("routes: have %v, want %v", have, want)
	}
	if n := logs.Count("several services publish one gRPC service"); n != 1 {
		t.Errorf("conflict warnings: have %d, want 1 over two equal updates:\n%s", n, logs.String())
	}
	if n := logs.Count("skip record"); n != 2 {
		t.Errorf("skip warnings: have %d, want 2 (one per update)", n)
	}
	if err := r.UpdateState(resolver.State{}); err != nil {
		t.Fatal(err)
	}
	if have := r.snapshot(); len(have) != 0 {
		t.Fatalf("routes with no instance: have %v, want none", have)
	}
	if rt, ok := r.lookup("x.X"); !ok || rt.service != "a" || rt.instances != 0 {
		t.Fatalf("x.X after its instances left: have %+v, %t; want known, a, 0 instances", rt, ok)
	}
	if _, ok := r.lookup("z.Z"); ok {
		t.Fatal("z.Z, only under another prefix: known")
	}
}
