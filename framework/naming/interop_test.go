package naming_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	etcdresolver "go.etcd.io/etcd/client/v3/naming/resolver"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

// svckit's records are read by etcd's own resolver.
func TestEtcdResolverReadsSvckitRecords(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	addr := testsvc.Serve(t)
	register(t, cli, "interop-a", addr)
	b, err := etcdresolver.NewBuilder(cli)
	if err != nil {
		t.Fatal(err)
	}
	cc := dial(t, b, "etcd:///services/interop-a")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	have, err := check(ctx, cc)
	if err != nil || have != addr {
		t.Fatalf("RPC through etcd's resolver: have %q, %v; want %s", have, err, addr)
	}
}

// etcd's endpoints.Manager's records are read by svckit's resolver,
// whatever metadata they carry.
func TestSvckitResolverReadsEndpointsManagerRecords(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	a, b := testsvc.Serve(t), testsvc.Serve(t)
	em, err := endpoints.NewManager(cli, "services/interop-b")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	// A string as metadata (as etcd's docs show), and a map.
	if err := em.AddEndpoint(ctx, "services/interop-b/"+a, endpoints.Endpoint{Addr: a, Metadata: "plain"}); err != nil {
		t.Fatal(err)
	}
	if err := em.AddEndpoint(ctx, "services/interop-b/instance-2",
		endpoints.Endpoint{Addr: b, Metadata: map[string]any{"version": "9", "weight": 2}}, clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	rec := watchTarget(t, naming.NewBuilder(cli), "etcd:///services/interop-b")
	poll.Until(t, 10*time.Second, "2 endpoints", func() bool { s, _ := rec.last(); return len(s.Endpoints) == 2 })
	s, _ := rec.last()
	for _, ep := range s.Endpoints {
		md, _ := naming.MetadataOf(ep)
		if ep.Addresses[0].Addr == b && (md.Version != "9" || md.Weight != 2) {
			t.Errorf("metadata of %s: have %+v, want version 9 weight 2", b, md)
		}
	}

	cc := dial(t, naming.NewBuilder(cli), "etcd:///services/interop-b")
	seen := map[string]bool{}
	poll.Until(t, 10*time.Second, "both servers reached", func() bool {
		p, err := check(ctx, cc)
		if err == nil {
			seen[p] = true
		}
		return seen[a] && seen[b]
	})
	if err := em.DeleteEndpoint(ctx, "services/interop-b/"+a); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "deleted endpoint dropped", func() bool { s, _ := rec.last(); return len(s.Endpoints) == 1 })
}
