package naming_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

func TestRegisteredServerIsReachedAndDroppedOnDeregister(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	a, b := testsvc.Serve(t), testsvc.Serve(t)
	ra := register(t, cli, "greeter", a)
	cc := dial(t, naming.NewBuilder(cli), "etcd:///services/greeter")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	have, err := check(ctx, cc)
	if err != nil || have != a {
		t.Fatalf("first RPC: have %q, %v; want %s", have, err, a)
	}
	register(t, cli, "greeter", b)
	poll.Until(t, 10*time.Second, "both servers picked", func() bool {
		seen := map[string]bool{}
		for range 4 {
			p, err := check(ctx, cc)
			if err != nil {
				return false
			}
			seen[p] = true
		}
		return seen[a] && seen[b]
	})
	if err := ra.Deregister(ctx); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	if n := etcdtest.Count(t, cli, "services/greeter/"+a); n != 0 {
		t.Fatalf("record of %s left after deregister", a)
	}
	poll.Until(t, 10*time.Second, "stopped server no longer picked", func() bool {
		for range 10 {
			if p, err := check(ctx, cc); err != nil || p != b {
				return false
			}
		}
		return true
	})
}

func TestResolverPassesMetadataInStableOrder(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	for _, addr := range []string{"127.0.0.1:9003", "127.0.0.1:9001", "127.0.0.1:9002"} {
		register(t, cli, "meta", addr)
	}
	rec := watchTarget(t, naming.NewBuilder(cli), "etcd:///services/meta")
	poll.Until(t, 10*time.Second, "3 endpoints", func() bool { s, _ := rec.last(); return len(s.Endpoints) == 3 })
	s, _ := rec.last()
	if have, want := addrsOf(s), []string{"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"}; !slices.Equal(have, want) {
		t.Fatalf("order: have %v, want %v", have, want)
	}
	if len(s.Addresses) != 3 || s.Addresses[0].Addr != "127.0.0.1:9001" {
		t.Fatalf("Addresses not mirrored: %v", s.Addresses)
	}
	ep := s.Endpoints[0]
	md, ok := naming.MetadataOf(ep)
	if !ok || md.InstanceID != "i-127.0.0.1:9001" || md.Version != "v1" {
		t.Fatalf("metadata: have %+v, %t", md, ok)
	}
	if w, _ := ep.Attributes.Value(naming.AttrWeight).(uint32); w != 3 {
		t.Errorf("weight attribute: have %d, want 3", w)
	}
	if z, _ := ep.Attributes.Value(naming.AttrZone).(string); z != "z1" {
		t.Errorf("zone attribute: have %q, want z1", z)
	}
	// Equal attributes must compare without panicking (etcd-io/etcd#19700).
	if !ep.Attributes.Equal(ep.Attributes) {
		t.Error("attributes not equal to themselves")
	}
}

func TestResolverOfAWholePrefixTellsEachEndpointsService(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	register(t, cli, "alpha", "127.0.0.1:9001")
	register(t, cli, "beta", "127.0.0.1:9002")
	rec := watchTarget(t, naming.NewBuilder(cli), "etcd:///services")
	poll.Until(t, 10*time.Second, "2 endpoints", func() bool { s, _ := rec.last(); return len(s.Endpoints) == 2 })
	s, _ := rec.last()
	var have []string
	for _, ep := range s.Endpoints {
		k, ok := naming.KeyOf(ep)
		if !ok {
			t.Fatalf("no key on %v", ep)
		}
		svc, addr, err := naming.ParseKey(naming.DefaultPrefix, k)
		if err != nil {
			t.Fatal(err)
		}
		have = append(have, svc+"="+addr)
	}
	if want := []string{"alpha=127.0.0.1:9001", "beta=127.0.0.1:9002"}; !slices.Equal(have, want) {
		t.Fatalf("have %v, want %v", have, want)
	}
}

func TestResolverSkipsMalformedRecordsOncePerKey(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	l, logs := newLogger(t)
	good := "127.0.0.1:9100"
	register(t, cli, "messy", good)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	garbage := map[string]string{
		"services/messy/not-json":        "not json at all",
		"services/messy/wrong-types":     `{"Op":0,"Addr":"127.0.0.1:9101","Metadata":{"weight":"heavy"}}`,
		"services/messy/no-addr":         `{"Op":0,"Addr":""}`,
		"services/messy/bad-addr":        `{"Op":0,"Addr":"127.0.0.1"}`,
		"services/messy/delete-op":       `{"Op":1,"Addr":"127.0.0.1:9102"}`,
		"services/messy/huge":            `{"Op":0,"Addr":"127.0.0.1:9103","Metadata":{"zone":"` + strings.Repeat("z", 1<<20) + `"}}`,
		"services/messy-admin/127.0.0.1": `{"Op":0,"Addr":"127.0.0.1:9104"}`,
		"services/messyother":            `{"Op":0,"Addr":"127.0.0.1:9105"}`,
	}
	for k, v := range garbage {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	b := naming.NewBuilder(cli, naming.WithResolverLogger(l))
	rec := watchTarget(t, b, "etcd:///services/messy")
	poll.Until(t, 10*time.Second, "first update", func() bool { _, n := rec.last(); return n > 0 })
	// Garbage written while watching, twice on one key, is skipped too.
	for _, v := range []string{"{", "[1,2]"} {
		if _, err := cli.Put(ctx, "services/messy/late", v); err != nil {
			t.Fatal(err)
		}
	}
	register(t, cli, "messy", "127.0.0.1:9106")
	poll.Until(t, 10*time.Second, "late good record", func() bool { s, _ := rec.last(); return len(s.Endpoints) == 2 })
	s, _ := rec.last()
	if have, want := addrsOf(s), []string{good, "127.0.0.1:9106"}; !slices.Equal(have, want) {
		t.Fatalf("endpoints: have %v, want %v", have, want)
	}
	if have, want := logs.Count("skip record"), 7; have != want {
		t.Errorf("skip record logged %d times, want %d (once per bad key):\n%s", have, want, logs)
	}
	st, ok := b.Status("services/messy")
	if !ok || st.Skipped != 7 || st.Endpoints != 2 {
		t.Errorf("status: have %+v", st)
	}
}

func TestResolverSharesOneWatchPerService(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	addr := testsvc.Serve(t)
	register(t, cli, "shared", addr)
	b := naming.NewBuilder(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ccs []func() error
	for range 5 {
		cc := dial(t, b, "etcd:///services/shared")
		if _, err := check(ctx, cc); err != nil {
			t.Fatalf("rpc: %v", err)
		}
		ccs = append(ccs, cc.Close)
	}
	st, ok := b.Status("services/shared")
	if !ok || st.Resolvers != 5 || st.Lists != 1 {
		t.Fatalf("status with 5 connections: have %+v, want 5 resolvers sharing 1 list", st)
	}
	for _, closeCC := range ccs {
		_ = closeCC()
	}
	if _, ok := b.Status("services/shared"); ok {
		t.Fatal("watch still running after every connection closed")
	}
}

func TestResolverCoalescesBursts(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	b := naming.NewBuilder(cli)
	rec := watchTarget(t, b, "etcd:///services/burst")
	poll.Until(t, 10*time.Second, "first update", func() bool { _, n := rec.last(); return n > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 300
	for i := range n {
		k := naming.Key("services/", "burst", fmt.Sprintf("127.0.0.1:%d", 10000+i))
		v, _ := naming.Record{Addr: fmt.Sprintf("127.0.0.1:%d", 10000+i)}.Encode()
		if _, err := cli.Put(ctx, k, string(v)); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 10*time.Second, "all endpoints", func() bool { s, _ := rec.last(); return len(s.Endpoints) == n })
	_, updates := rec.last()
	t.Logf("%d registrations reached gRPC in %d updates", n, updates)
	if updates >= n/2 {
		t.Fatalf("%d registrations cost %d updates; want them coalesced", n, updates)
	}
}

func TestResolverKeepsListAndRegistrarReturnsAfterEtcdOutage(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	a := testsvc.Serve(t)
	r := register(t, cli, "outage", a, naming.WithTTL(2*time.Second))
	b := naming.NewBuilder(cli)
	cc := dial(t, b, "etcd:///services/outage")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := check(ctx, cc); err != nil {
		t.Fatalf("rpc before outage: %v", err)
	}

	c.Stop(0)
	// Outlive the TTL: the registrar sees the lease lost.
	poll.Until(t, 20*time.Second, "registrar sees the lease lost", func() bool { return r.Status().State == naming.StateLost })
	for i := range 20 {
		if _, err := check(ctx, cc); err != nil {
			t.Fatalf("rpc %d while etcd is down: %v", i, err)
		}
	}
	if st, _ := b.Status("services/outage"); st.Endpoints != 1 {
		t.Fatalf("resolver dropped its list during the outage: %+v", st)
	}

	if err := c.Restart(0); err != nil {
		t.Fatalf("restart etcd: %v", err)
	}
	took := poll.Until(t, 20*time.Second, "registered again", func() bool {
		st := r.Status()
		return st.State == naming.StateRegistered && st.Registrations >= 2 && etcdtest.Count(t, cli, "services/outage/") == 1
	})
	t.Logf("registered again %s after etcd returned", took.Round(time.Millisecond))
	for i := range 20 {
		if _, err := check(ctx, cc); err != nil {
			t.Fatalf("rpc %d after outage: %v", i, err)
		}
	}
}

func TestLeaderLossCostsNoRegistrationAndNoRPC(t *testing.T) {
	t.Parallel()
	c := etcdtest.StartCluster(t, 3)
	l, _ := newLogger(t)
	cli := newClient(t, c.Endpoints(), l)
	a := testsvc.Serve(t)
	r := register(t, cli, "ha", a, naming.WithTTL(3*time.Second))
	b := naming.NewBuilder(cli)
	rec := watchTarget(t, b, "etcd:///services/ha")
	cc := dial(t, b, "etcd:///services/ha")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := check(ctx, cc); err != nil {
		t.Fatalf("rpc before: %v", err)
	}

	var calls, failures atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 100_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			calls.Add(1)
			if _, err := check(ctx, cc); err != nil {
				failures.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	old := c.Leader()
	c.Stop(old)
	poll.Until(t, 20*time.Second, "new leader", func() bool { l := c.Leader(); return l >= 0 && l != old })
	// Keep calling through a few keepalive rounds under the new leader.
	base := r.Status().KeepAlives
	poll.Until(t, 20*time.Second, "keepalives under the new leader", func() bool { return r.Status().KeepAlives >= base+3 })
	close(stop)
	<-done

	st := r.Status()
	t.Logf("leader %d stopped: %d RPCs, %d failed; registrar %+v", old, calls.Load(), failures.Load(), st)
	if failures.Load() != 0 {
		t.Errorf("failed RPCs: have %d, want 0", failures.Load())
	}
	if st.Losses != 0 || st.Registrations != 1 {
		t.Errorf("registration lost: losses %d, registrations %d", st.Losses, st.Registrations)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i, s := range rec.states {
		if len(s.Endpoints) != 1 {
			t.Errorf("update %d had %d endpoints, want 1 throughout", i, len(s.Endpoints))
		}
	}
}

func TestResolverRecoversFromCompaction(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	admin := c.Client(t)
	// The resolver reaches etcd through a proxy that can cut it off.
	p := etcdtest.NewProxy(t, c.Endpoint(0))
	cli := newClient(t, []string{p.Addr()}, nil)
	register(t, admin, "compact", "127.0.0.1:9201")
	b := naming.NewBuilder(cli, naming.WithResolverBackoff(naming.Backoff{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}))
	rec := watchTarget(t, b, "etcd:///services/compact")
	poll.Until(t, 10*time.Second, "first endpoint", func() bool { s, _ := rec.last(); return len(s.Endpoints) == 1 })

	// Cut the resolver off, change the set, and compact past its watch.
	p.Cut()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	register(t, admin, "compact", "127.0.0.1:9202")
	for i := range 10 {
		if _, err := admin.Put(ctx, fmt.Sprintf("other/%d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	rev, err := c.Compact(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := b.Status("services/compact")
	p.Heal()

	took := poll.Until(t, 30*time.Second, "resolver converged after compaction", func() bool {
		s, _ := rec.last()
		return slices.Equal(addrsOf(s), []string{"127.0.0.1:9201", "127.0.0.1:9202"})
	})
	after, _ := b.Status("services/compact")
	t.Logf("compacted at %d; converged %s after the cut healed; lists %d → %d", rev, took.Round(time.Millisecond), before.Lists, after.Lists)
	if after.Lists <= before.Lists {
		t.Errorf("no list after compaction: lists %d → %d", before.Lists, after.Lists)
	}
}

func TestResolverHoldsLastEndpointsThroughEmptyListAfterOutage(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	admin := c.Client(t)
	p := etcdtest.NewProxy(t, c.Endpoint(0))
	cli := newClient(t, []string{p.Addr()}, nil)
	r := register(t, admin, "hold", "127.0.0.1:9301")
	const hold = time.Second
	b := naming.NewBuilder(cli, naming.WithHold(hold),
		naming.WithResolverBackoff(naming.Backoff{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}))
	rec := watchTarget(t, b, "etcd:///services/hold")
	poll.Until(t, 10*time.Second, "first endpoint", func() bool { s, _ := rec.last(); return len(s.Endpoints) == 1 })

	// While the resolver is cut off, the instance's record goes and the
	// history is compacted: the resolver must list again, and finds nothing.
	p.Cut()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := admin.Put(ctx, fmt.Sprintf("other/%d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Compact(ctx, admin); err != nil {
		t.Fatal(err)
	}
	before, _ := b.Status("services/hold")
	p.Heal()
	poll.Until(t, 30*time.Second, "listed again", func() bool { st, _ := b.Status("services/hold"); return st.Lists > before.Lists })
	if s, _ := rec.last(); len(s.Endpoints) != 1 {
		t.Fatalf("empty list after the outage published at once: %v", addrsOf(s))
	}
	took := poll.Until(t, 10*time.Second, "kept endpoint dropped after the hold", func() bool { s, _ := rec.last(); return len(s.Endpoints) == 0 })
	t.Logf("kept endpoint dropped %s after the list (hold %s)", took.Round(time.Millisecond), hold)
}
