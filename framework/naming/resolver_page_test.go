package naming_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
)

func TestResolverListsAgainAtOnceWhenCompactedMidList(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	admin := c.Client(t)
	const n = 6
	for i := range n {
		addr := fmt.Sprintf("127.0.0.1:%d", 12000+i)
		putRaw(t, admin, naming.Key("services/", "midcompact", addr), record(t, addr, naming.Metadata{}))
	}
	// After the first page of the first list, etcd compacts past the
	// list's revision: the next page's read at that revision fails.
	var (
		once       sync.Once
		compactErr error
	)
	hook := func(int) {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := admin.Put(ctx, "other/advance", "x"); err != nil {
				compactErr = err
				return
			}
			_, compactErr = c.Compact(ctx, admin)
		})
	}
	l, logs := newLogger(t)
	b := naming.NewBuilder(c.Client(t), naming.WithResolverLogger(l),
		naming.WithListPage(2), naming.WithAfterPage(hook),
		naming.WithResolverBackoff(naming.Backoff{Min: time.Second, Max: time.Second}))
	rec := watchTarget(t, b, "etcd:///services/midcompact")
	took := poll.Until(t, 20*time.Second, "every record listed", func() bool { s, _ := rec.last(); return len(s.Endpoints) == n })
	if compactErr != nil {
		t.Fatalf("compact: %v", compactErr)
	}
	st, _ := b.Status("services/midcompact")
	t.Logf("listed %d records in %s despite a compaction mid-list; %d list(s); %d relist(s)", st.Endpoints,
		took.Round(time.Millisecond), st.Lists, logs.Count("listing again at a fresh revision"))
	if k := logs.Count("list failed"); k != 0 {
		t.Errorf("compaction mid-list reported as a failed list %d time(s):\n%s", k, logs)
	}
	if st.LastError != nil || !st.StaleSince.IsZero() {
		t.Errorf("status after the list: last error %v, stale since %v", st.LastError, st.StaleSince)
	}
	if logs.Count("listing again at a fresh revision") == 0 {
		t.Errorf("no compaction seen mid-list (hook did not bite?):\n%s", logs)
	}
}

func TestResolverPageGrowsBackAfterASlowLinkRecovers(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	admin := c.Client(t)
	// 60 records of about 7 KiB (420 KB); at 100 KiB/s a page of more
	// than about 14 keys misses its bound of 1s + 1ms a key.
	const n = 60
	for i := range n {
		addr := fmt.Sprintf("127.0.0.1:%d", 13000+i)
		md := naming.Metadata{Labels: map[string]string{"pad": strings.Repeat("x", 7<<10)}}
		putRaw(t, admin, naming.Key("services/", "regrow", addr), record(t, addr, md))
	}
	p := etcdtest.NewProxy(t, c.Endpoint(0))
	l, logs := newLogger(t)
	cli := newClient(t, []string{p.Addr()}, l)
	p.SetBandwidth(100 << 10)
	// The link is fast again once a first page got through.
	var (
		mu    sync.Mutex
		sizes []int
	)
	hook := func(k int) {
		mu.Lock()
		defer mu.Unlock()
		if len(sizes) == 0 {
			p.SetBandwidth(0)
		}
		sizes = append(sizes, k)
	}
	b := naming.NewBuilder(cli, naming.WithResolverLogger(l), naming.WithListTimeout(time.Second),
		naming.WithListPage(n), naming.WithAfterPage(hook))
	rec := watchTarget(t, b, "etcd:///services/regrow")
	poll.Until(t, 60*time.Second, "every record listed", func() bool { s, _ := rec.last(); return len(s.Endpoints) == n })
	mu.Lock()
	defer mu.Unlock()
	t.Logf("page sizes read: %v; %d page shrink(s)", sizes, logs.Count("list page slow"))
	if logs.Count("list page slow") == 0 {
		t.Fatalf("the link was never slow enough to shrink a page:\n%s", logs)
	}
	if len(sizes) < 2 || slices.Max(sizes[1:]) <= sizes[0] {
		t.Errorf("page did not grow back once pages came in fast: sizes %v", sizes)
	}
}
