package naming_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

// putRaw writes value at key.
func putRaw(t *testing.T, cli *clientv3.Client, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, value); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// record returns the encoded record of addr with md.
func record(t *testing.T, addr string, md naming.Metadata) string {
	t.Helper()
	v, err := naming.Record{Addr: addr, Metadata: md}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}

func TestResolverStartedWhileEtcdIsDownReportsItThenRecovers(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	c.Stop(0) // the client starts before etcd
	l, logs := newLogger(t)
	cli := newClient(t, c.Endpoints(), l)
	b := naming.NewBuilder(cli, naming.WithResolverLogger(l))
	cc := dial(t, b, "etcd:///services/late")

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := check(ctx, cc)
	cancel()
	took := time.Since(start)
	t.Logf("call while etcd is down failed after %s: %v", took.Round(time.Millisecond), err)
	if err == nil {
		t.Fatal("call succeeded with etcd down")
	}
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "etcd") || !strings.Contains(err.Error(), c.Endpoint(0)) {
		t.Fatalf("call while etcd is down: want Unavailable naming etcd at %s, have %v", c.Endpoint(0), err)
	}
	if took > 8*time.Second {
		t.Fatalf("call took %s to fail", took)
	}
	st, _ := b.Status("services/late")
	if st.LastError == nil || st.StaleSince.IsZero() {
		t.Fatalf("status while etcd is down: %+v", st)
	}
	if logs.Count("list failed") == 0 {
		t.Errorf("no warning logged:\n%s", logs)
	}

	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	addr := testsvc.Serve(t)
	register(t, cli, "late", addr)
	took = poll.Until(t, 20*time.Second, "call succeeds once etcd and a server are up", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		have, err := check(ctx, cc)
		return err == nil && have == addr
	})
	t.Logf("call succeeded %s after etcd started", took.Round(time.Millisecond))
	if st, _ := b.Status("services/late"); st.LastError != nil || st.Endpoints != 1 {
		t.Fatalf("status after recovery: %+v", st)
	}
}

func TestResolverForgetsBadKeysDeletedUnseen(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	admin := c.Client(t)
	p := etcdtest.NewProxy(t, c.Endpoint(0))
	l, logs := newLogger(t)
	cli := newClient(t, []string{p.Addr()}, l)
	const bad = "services/forget/junk"
	putRaw(t, admin, bad, "{")
	register(t, admin, "forget", "127.0.0.1:9401")
	b := naming.NewBuilder(cli, naming.WithResolverLogger(l),
		naming.WithResolverBackoff(naming.Backoff{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}))
	rec := watchTarget(t, b, "etcd:///services/forget")
	poll.Until(t, 10*time.Second, "first endpoint", func() bool { s, _ := rec.last(); return len(s.Endpoints) == 1 })
	if st, _ := b.Status("services/forget"); st.Skipped != 1 {
		t.Fatalf("skipped %d, want 1", st.Skipped)
	}

	// The bad key goes while the resolver is cut off, past a compaction:
	// the watch never sees the delete, the next list does not find it.
	p.Cut()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.Delete(ctx, bad); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		putRaw(t, admin, fmt.Sprintf("other/%d", i), "x")
	}
	if _, err := c.Compact(ctx, admin); err != nil {
		t.Fatal(err)
	}
	before, _ := b.Status("services/forget")
	p.Heal()
	poll.Until(t, 30*time.Second, "listed again", func() bool { st, _ := b.Status("services/forget"); return st.Lists > before.Lists })
	poll.Until(t, 5*time.Second, "published after the list", func() bool {
		st, _ := b.Status("services/forget")
		return st.Updates > before.Updates
	})
	if st, _ := b.Status("services/forget"); st.Skipped != 0 {
		t.Fatalf("deleted bad key still skipped: %+v", st)
	}

	// Written bad again, it is logged again, once.
	putRaw(t, admin, bad, "[")
	poll.Until(t, 10*time.Second, "bad key skipped again", func() bool { st, _ := b.Status("services/forget"); return st.Skipped == 1 })
	if have, want := logs.Count("skip record"), 2; have != want {
		t.Fatalf("skip record logged %d times, want %d:\n%s", have, want, logs)
	}
}

func TestResolverPicksTheLowestKeyOfAnAddress(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	admin := c.Client(t)
	l, logs := newLogger(t)
	const addr = "127.0.0.1:9501"
	// Written highest key first: the winner must not depend on the order
	// of writes or of a map.
	putRaw(t, admin, "services/twin/z-second", record(t, addr, naming.Metadata{Version: "z"}))
	putRaw(t, admin, "services/twin/a-first", record(t, addr, naming.Metadata{Version: "a"}))
	// Another service on the same host:port.
	putRaw(t, admin, naming.Key("services/", "cousin", addr), record(t, addr, naming.Metadata{Version: "c"}))
	cli := c.Client(t)
	for i := range 8 { // each a new watch: a new list, a new map order
		b := naming.NewBuilder(cli, naming.WithResolverLogger(l))
		target := "etcd:///services/twin" + strings.Repeat("/", i) // one prefix, a recorder each
		rec := watchTarget(t, b, target)
		poll.Until(t, 10*time.Second, "first update", func() bool { _, n := rec.last(); return n > 0 })
		s, _ := rec.last()
		if len(s.Endpoints) != 1 {
			t.Fatalf("watch %d: endpoints %v, want one", i, addrsOf(s))
		}
		md, _ := naming.MetadataOf(s.Endpoints[0])
		key, _ := naming.KeyOf(s.Endpoints[0])
		if md.Version != "a" || key != "services/twin/a-first" {
			t.Fatalf("watch %d: endpoint of %s (version %q), want services/twin/a-first", i, key, md.Version)
		}
	}

	// The whole-prefix view sees both services on the address.
	rec := watchTarget(t, naming.NewBuilder(cli, naming.WithResolverLogger(l)), "etcd:///services")
	poll.Until(t, 10*time.Second, "whole prefix", func() bool { _, n := rec.last(); return n > 0 })
	s, _ := rec.last()
	var services []string
	for _, ep := range s.Endpoints {
		key, _ := naming.KeyOf(ep)
		svc, err := naming.ServiceOfKey("services/", key)
		if err != nil {
			t.Fatal(err)
		}
		services = append(services, svc)
	}
	slices.Sort(services)
	if want := []string{"cousin", "twin"}; !slices.Equal(services, want) {
		t.Fatalf("whole prefix: services %v, want %v", services, want)
	}
	if n := logs.Count("two records of one address"); n == 0 {
		t.Errorf("conflict not logged:\n%s", logs)
	}
}

func TestResolverListsPagesLargerThanTheReplyBound(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	admin := c.Client(t)
	// A client bounded to 64 KiB per reply stands for NewClient's 64 MiB:
	// 100 records of about 7 KiB cannot come in one reply.
	small, err := clientv3.New(clientv3.Config{
		Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		MaxCallRecvMsgSize: 64 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = small.Close() })
	const n = 100
	for i := range n {
		addr := fmt.Sprintf("127.0.0.1:%d", 10000+i)
		md := naming.Metadata{Labels: map[string]string{"pad": strings.Repeat("x", 7<<10)}}
		putRaw(t, admin, naming.Key("services/", "big", addr), record(t, addr, md))
	}
	l, logs := newLogger(t)
	b := naming.NewBuilder(small, naming.WithResolverLogger(l))
	rec := watchTarget(t, b, "etcd:///services/big")
	poll.Until(t, 20*time.Second, "every big record listed", func() bool { s, _ := rec.last(); return len(s.Endpoints) == n })
	st, _ := b.Status("services/big")
	t.Logf("listed %d records of 7 KiB through a 64 KiB reply bound; %d list(s); %d page shrink(s)", st.Endpoints, st.Lists,
		logs.Count("list reply too large"))
}

func TestResolverListsALargePrefixOverASlowLink(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	admin := c.Client(t)
	// 300 records of about 7 KiB (2.1 MB) through a link of 1 MB/s take
	// about 2 s, twice the list timeout of 1 s.
	const n = 300
	for i := range n {
		addr := fmt.Sprintf("127.0.0.1:%d", 11000+i)
		md := naming.Metadata{Labels: map[string]string{"pad": strings.Repeat("x", 7<<10)}}
		putRaw(t, admin, naming.Key("services/", "slow", addr), record(t, addr, md))
	}
	p := etcdtest.NewProxy(t, c.Endpoint(0))
	l, logs := newLogger(t)
	cli := newClient(t, []string{p.Addr()}, l)
	p.SetBandwidth(1 << 20)
	b := naming.NewBuilder(cli, naming.WithResolverLogger(l), naming.WithListTimeout(time.Second))
	rec := watchTarget(t, b, "etcd:///services/slow")
	took := poll.Until(t, 30*time.Second, "every record listed over the slow link", func() bool {
		s, _ := rec.last()
		return len(s.Endpoints) == n
	})
	st, _ := b.Status("services/slow")
	t.Logf("listed %d records of 7 KiB over 1 MB/s in %s; %d list(s), %d page shrink(s), %d unreachable", st.Endpoints,
		took.Round(time.Millisecond), st.Lists, logs.Count("list page slow"), logs.Count("unreachable"))
}

func TestResolverTellsASlowEtcdFromAnUnreachableOne(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	admin := c.Client(t)
	md := naming.Metadata{Labels: map[string]string{"pad": strings.Repeat("x", 7<<10)}}
	putRaw(t, admin, naming.Key("services/", "crawl", "127.0.0.1:9500"), record(t, "127.0.0.1:9500", md))
	p := etcdtest.NewProxy(t, c.Endpoint(0))
	l, _ := newLogger(t)
	cli := newClient(t, []string{p.Addr()}, l)
	// One record of 7 KiB at 1 KiB/s: etcd answers at once, but the
	// record takes 7 s, more than the 500 ms list timeout.
	p.SetBandwidth(1 << 10)
	b := naming.NewBuilder(cli, naming.WithResolverLogger(l), naming.WithListTimeout(500*time.Millisecond))
	watchTarget(t, b, "etcd:///services/crawl")
	var st naming.WatchStatus
	poll.Until(t, 10*time.Second, "a failed list", func() bool {
		st, _ = b.Status("services/crawl")
		return st.LastError != nil
	})
	if have := st.LastError.Error(); !strings.Contains(have, "slow") || strings.Contains(have, "unreachable") {
		t.Fatalf("error of a slow etcd: want slow, not unreachable, have %q", have)
	}
	t.Logf("slow etcd: %v", st.LastError)
}
