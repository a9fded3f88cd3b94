package naming

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
)

// Scheme is the URI scheme the Builder resolves: etcd:///<prefix><service>.
const Scheme = "etcd"

// listPage is how many keys one list request reads at most; larger sets
// are read in pages at one revision. A page whose reply exceeds the etcd
// client's bound on a reply (NewClient sets 64 MiB), or that is not read in
// time (pageTimeout), is read again in half as many keys, down to one.
const listPage = 10000

// keyBudget is the time a list page may take per key beyond the list
// timeout: a page of n keys has WithListTimeout + n·keyBudget, 13s for a
// full page by default. It lets a page of 10,000 records of 7 KiB (70 MB)
// come in whole over a link of 5 MB/s; a slower link is read in smaller
// pages.
const keyBudget = time.Millisecond

// ResolverOption configures a Builder.
type ResolverOption func(*resolverOptions)

type resolverOptions struct {
	logger  *slog.Logger
	backoff Backoff
	resync  time.Duration
	hold    time.Duration
	timeout time.Duration

	// Set by tests only (export_test.go).
	page      int         // keys per list request at most; 0 means listPage
	afterPage func(n int) // called after each page read, with its size
}

// WithResolverLogger sets the logger; default slog.Default().
func WithResolverLogger(l *slog.Logger) ResolverOption {
	return func(o *resolverOptions) { o.logger = l }
}

// WithResolverBackoff sets the backoff between failed lists; default 100ms
// to 2s.
func WithResolverBackoff(b Backoff) ResolverOption {
	return func(o *resolverOptions) { o.backoff = b }
}

// WithResync sets how often the watch checks that etcd's revision has not
// gone back (etcd replaced by an empty one), which a watch cannot see.
// Default 10s; 0 disables the check.
func WithResync(d time.Duration) ResolverOption {
	return func(o *resolverOptions) { o.resync = d }
}

// WithHold sets how long the resolver keeps its last endpoints when the
// first list after an etcd outage is empty: instances whose leases expired
// during the outage are still serving and register again within a few
// seconds of etcd's return. Default 5s; 0 publishes the empty list at once.
// Deletions seen by a healthy watch are always published at once.
func WithHold(d time.Duration) ResolverOption {
	return func(o *resolverOptions) { o.hold = d }
}

// WithListTimeout bounds the first request of a list, a count of the
// prefix's keys: an etcd client waits for a connection, so without a bound
// a resolver started while etcd is down would wait in silence. When etcd
// does not answer within d, the attempt fails as "etcd [...] unreachable",
// the resolver's connections see the error until a first list succeeds,
// and the resolver tries again after its backoff. A page of n keys then has
// d + n·1ms (13s for a page of 10,000 with the default): a page that misses
// it while etcd still answers is read again in half as many keys, and the
// list fails, as "etcd [...] slow", only when one key is not read within
// d+1ms. Default 3s; 0 or less keeps the default.
func WithListTimeout(d time.Duration) ResolverOption {
	return func(o *resolverOptions) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WatchStatus describes the etcd watch behind a service's resolvers, so that
// operators can see a resolver serving from a stale list.
type WatchStatus struct {
	// Target is the watched key prefix, e.g. "services/fileserver/".
	Target string
	// Endpoints is the number of endpoints in the last update.
	Endpoints int
	// Skipped is the number of keys under the prefix skipped as malformed.
	Skipped int
	// Revision is the etcd revision the list reflects.
	Revision int64
	// LastSync is when etcd last answered the list or the watch.
	LastSync time.Time
	// StaleSince is when the watch last failed and has not recovered since;
	// zero while it is healthy.
	StaleSince time.Time
	// Lists counts full lists, the first one included.
	Lists int64
	// Rewatches counts watches started again after a failure, close or
	// compaction.
	Rewatches int64
	// Updates counts updates pushed to gRPC.
	Updates int64
	// Resolvers is the number of gRPC resolvers sharing the watch.
	Resolvers int
	// LastError is the last error, nil once recovered.
	LastError error
}

// Builder builds resolvers for etcd:///<prefix><service> targets. Resolvers
// of the same target share one etcd watch. Pass it per connection with
// grpc.WithResolvers.
type Builder struct {
	cli  *clientv3.Client
	opts resolverOptions
	log  *slog.Logger

	mu      sync.Mutex
	watches map[string]*watch
}

var _ resolver.Builder = (*Builder)(nil)

// NewBuilder returns a Builder that reads etcd through cli.
func NewBuilder(cli *clientv3.Client, opts ...ResolverOption) *Builder {
	o := resolverOptions{
		logger:  slog.Default(),
		backoff: defaultBackoff(),
		resync:  10 * time.Second,
		hold:    5 * time.Second,
		timeout: 3 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return &Builder{
		cli:     cli,
		opts:    o,
		log:     o.logger.With("component", "resolver"),
		watches: make(map[string]*watch),
	}
}

// Scheme returns "etcd".
func (b *Builder) Scheme() string { return Scheme }

// parseTarget returns the etcd key prefix that a target's resolver watches:
// the target's path (or opaque part) without its leading and trailing '/',
// then one '/'. For "etcd:///services/fileserver" it is
// "services/fileserver/", under which Key("services/", "fileserver", addr)
// puts every instance and no instance of a sibling such as
// "fileserver-admin". A target whose path names nothing is refused with an
// error wrapping ErrInvalid.
func parseTarget(target resolver.Target) (string, error) {
	path := target.URL.Path
	if path == "" {
		path = target.URL.Opaque
	}
	path = strings.Trim(path, "/")
	if path == "" {
		return "", fmt.Errorf("naming: target %q names no service: %w", target.URL.String(), ErrInvalid)
	}
	return path + "/", nil
}

// Build starts (or joins) the watch of the target's service.
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	prefix, err := parseTarget(target)
	if err != nil {
		return nil, err
	}

	b.mu.Lock()
	w, ok := b.watches[prefix]
	if !ok {
		w = b.newWatch(prefix)
		b.watches[prefix] = w
	}
	r := &etcdResolver{w: w, cc: cc, notify: make(chan struct{}, 1)}
	w.mu.Lock()
	w.subs[r] = struct{}{}
	w.mu.Unlock()
	b.mu.Unlock()

	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.run(ctx)
	select {
	case r.notify <- struct{}{}:
	default:
	}
	return r, nil
}

// Status returns the status of the watch of target, e.g.
// "services/fileserver", and whether such a watch runs.
func (b *Builder) Status(target string) (WatchStatus, bool) {
	prefix := strings.Trim(target, "/") + "/"
	b.mu.Lock()
	w, ok := b.watches[prefix]
	b.mu.Unlock()
	if !ok {
		return WatchStatus{}, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.status
	st.Resolvers = len(w.subs)
	return st, true
}

// release drops r from its watch and stops the watch when r was its last
// resolver.
func (b *Builder) release(r *etcdResolver) {
	w := r.w
	b.mu.Lock()
	w.mu.Lock()
	delete(w.subs, r)
	last := len(w.subs) == 0
	w.mu.Unlock()
	if last && b.watches[w.prefix] == w {
		delete(b.watches, w.prefix)
	}
	b.mu.Unlock()
	if last {
		w.cancel()
		w.wg.Wait()
	}
}

// snapshot is what the watch last published.
type snapshot struct {
	version int64
	state   resolver.State
	err     error // set while no state was ever published
}

// watch lists and watches one prefix and publishes to its resolvers.
type watch struct {
	b      *Builder
	prefix string
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	subs   map[*etcdResolver]struct{}
	snap   snapshot
	status WatchStatus

	// Owned by the run goroutine.
	entries    map[string]resolver.Endpoint
	bad        map[string]struct{}
	dupes      map[string]struct{} // keys hidden by another record of their address, logged
	page       int                 // keys per list request; 0 means the builder's maximum
	rev        int64
	clusterID  uint64
	published  bool
	recovering bool                         // the next list follows a failure
	held       map[string]resolver.Endpoint // endpoints kept through an empty list
	heldUntil  time.Time
}

func (b *Builder) newWatch(prefix string) *watch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{
		b:       b,
		prefix:  prefix,
		log:     b.log.With("target", prefix),
		cancel:  cancel,
		subs:    make(map[*etcdResolver]struct{}),
		entries: make(map[string]resolver.Endpoint),
		bad:     make(map[string]struct{}),
	}
	w.status.Target = prefix
	w.wg.Add(1)
	go w.run(ctx)
	return w
}

// errRewound says etcd's revision went back or its cluster changed.
var errRewound = errors.New("etcd revision went back or cluster changed (data lost?)")

func (w *watch) run(ctx context.Context) {
	defer w.wg.Done()
	fails := 0
	for ctx.Err() == nil {
		if err := w.list(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.fail(err)
			if fails == 0 || fails%10 == 0 {
				w.log.Warn("list failed; keeping the last known endpoints", "err", err, "attempt", fails+1)
			}
			w.recovering = true
			if !sleep(ctx, w.b.opts.backoff.Delay(fails)) {
				return
			}
			fails++
			continue
		}
		fails = 0
		w.recovering = false
		err := w.watch(ctx)
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		w.status.Rewatches++
		w.mu.Unlock()
		// Every list after the first follows a gap in what the watch saw.
		w.recovering = true
		if errors.Is(err, rpctypes.ErrCompacted) || errors.Is(err, errRewound) {
			w.log.Info("listing again", "reason", err)
			continue
		}
		w.fail(err)
		w.log.Warn("watch failed; listing again", "err", err)
		if !sleep(ctx, w.b.opts.backoff.Delay(0)) {
			return
		}
	}
}

func (w *watch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status.LastError = err
	if w.status.StaleSince.IsZero() {
		w.status.StaleSince = time.Now()
	}
	if !w.published {
		w.snap.version++
		w.snap.err = fmt.Errorf("naming: resolve %s: %w", w.prefix, err)
		w.notifyLocked()
	}
}

func (w *watch) synced(rev int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status.LastSync = time.Now()
	w.status.StaleSince = time.Time{}
	w.status.LastError = nil
	if rev > w.status.Revision {
		w.status.Revision = rev
	}
}

// list reads every key under the prefix at one revision, replaces the
// entries and publishes them.
//
// It first asks etcd for the number of keys (a count-only request, cheap
// whatever the prefix holds) within the list timeout: no answer means etcd
// is unreachable. The keys then come in pages at that count's revision,
// each page bounded by the list timeout plus keyBudget a key. A page that
// misses its bound, while etcd still answers a count, is read again in
// half as many keys: a slow link lists in smaller pages rather than never.
// Only when one key cannot be read in time does the list fail, as slow.
// The page size doubles again, up to listPage, after each page read in
// under a quarter of its bound, so an outage does not leave the watch
// listing in small pages for its life. When etcd compacts the list's
// revision between two pages, the list starts again at once at a fresh
// revision, without backoff or error, up to compactedRelists times.
func (w *watch) list(ctx context.Context) error {
	for try := 1; ; try++ {
		err := w.listAt(ctx)
		if !errors.Is(err, rpctypes.ErrCompacted) || try > compactedRelists || ctx.Err() != nil {
			return err
		}
		// The revision the pages are read at was compacted away mid-list:
		// not an outage, list again at once at a fresh revision.
		w.log.Info("list revision compacted; listing again at a fresh revision", "err", err, "attempt", try)
	}
}

// compactedRelists is how many times in a row a list whose revision is
// compacted mid-list is started again at once before it fails as any
// other list (backoff, error reported): compaction more often than a
// list takes is an etcd misconfiguration worth reporting.
const compactedRelists = 3

// listAt is one attempt of list, at the revision of its first request.
func (w *watch) listAt(ctx context.Context) error {
	end := clientv3.GetPrefixRangeEnd(w.prefix)
	head, err := w.count(ctx, end)
	if err != nil {
		return err
	}
	rev, clusterID := head.Header.Revision, head.Header.ClusterId
	entries := make(map[string]resolver.Endpoint, len(w.entries))
	// The skipped set is rebuilt: a bad key deleted while the watch was
	// down is forgotten, and logged again if it comes back bad.
	bad := make(map[string]struct{}, len(w.bad))
	// A page shrunk by a slow link or a partition grows back, doubling
	// after each page read in under a quarter of its bound, up to ceiling;
	// a reply too large lowers the ceiling for the rest of this list.
	ceiling := w.maxPage()
	if w.page == 0 || w.page > ceiling {
		w.page = ceiling
	}
	key, left := w.prefix, head.Count
	for left > 0 {
		n := int(min(int64(w.page), left))
		start := time.Now()
		resp, slow, err := w.get(ctx, key, end, rev, n)
		switch {
		case status.Code(err) == codes.ResourceExhausted && n > 1:
			w.page = n / 2
			ceiling = w.page
			w.log.Warn("list reply too large; reading fewer keys at a time", "keys", w.page, "err", err)
			continue
		case slow && n > 1:
			w.page = n / 2
			w.log.Warn("list page slow; reading fewer keys at a time", "keys", w.page, "err", err)
			// Slow, or gone? Gone fails the list as unreachable. (So may
			// a count queued behind the bytes of the abandoned page: the
			// next list then starts with the smaller page.)
			if _, err := w.count(ctx, end); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		if time.Since(start) < w.pageLimit(n)/4 && n == w.page && w.page < ceiling {
			w.page = min(2*w.page, ceiling)
		}
		if f := w.b.opts.afterPage; f != nil {
			f(n)
		}
		for i, d := range decodeAll(resp.Kvs) {
			k := string(resp.Kvs[i].Key)
			if d.err != nil {
				if _, seen := w.bad[k]; !seen {
					w.log.Warn("skip record", "key", k, "err", d.err)
				}
				bad[k] = struct{}{}
				continue
			}
			entries[k] = d.ep
		}
		left -= int64(len(resp.Kvs))
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	if len(entries) == 0 && len(w.entries) > 0 && w.recovering && w.b.opts.hold > 0 {
		w.held, w.heldUntil = w.entries, time.Now().Add(w.b.opts.hold)
		w.log.Warn("no endpoints after an etcd outage; keeping the last known ones while instances register again",
			"endpoints", len(w.entries), "hold", w.b.opts.hold)
	}
	w.entries, w.bad, w.rev, w.clusterID = entries, bad, rev, clusterID
	w.mu.Lock()
	w.status.Lists++
	w.mu.Unlock()
	w.synced(rev)
	w.publish()
	return nil
}

// count asks etcd, within the list timeout, how many keys the prefix
// holds. Its error names etcd's endpoints, and calls etcd unreachable when
// it did not answer in time.
func (w *watch) count(ctx context.Context, end string) (*clientv3.GetResponse, error) {
	gctx, cancel := context.WithTimeout(ctx, w.b.opts.timeout)
	defer cancel()
	resp, err := w.b.cli.Get(gctx, w.prefix, clientv3.WithRange(end), clientv3.WithCountOnly())
	switch {
	case err == nil:
		return resp, nil
	case ctx.Err() == nil && gctx.Err() != nil:
		return nil, fmt.Errorf("etcd %v unreachable: no answer within %s: %w", w.b.cli.Endpoints(), w.b.opts.timeout, err)
	default:
		return nil, fmt.Errorf("etcd %v: %w", w.b.cli.Endpoints(), err)
	}
}

// maxPage is the most keys one list request reads.
func (w *watch) maxPage() int {
	if w.b.opts.page > 0 {
		return w.b.opts.page
	}
	return listPage
}

// pageLimit is the time a page of n keys may take.
func (w *watch) pageLimit(n int) time.Duration {
	return w.b.opts.timeout + time.Duration(n)*keyBudget
}

// get reads one page of at most n keys of the list, from key to end, at
// rev, within the list timeout plus n·keyBudget; slow says it missed that
// bound. Its error names etcd's endpoints.
func (w *watch) get(ctx context.Context, key, end string, rev int64, n int) (_ *clientv3.GetResponse, slow bool, _ error) {
	limit := w.pageLimit(n)
	gctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	resp, err := w.b.cli.Get(gctx, key, clientv3.WithRange(end), clientv3.WithLimit(int64(n)), clientv3.WithRev(rev))
	switch {
	case err == nil:
		return resp, false, nil
	case ctx.Err() == nil && gctx.Err() != nil:
		return nil, true, fmt.Errorf("etcd %v slow: a page of %d key(s) not read within %s: %w", w.b.cli.Endpoints(), n, limit, err)
	default:
		return nil, false, fmt.Errorf("etcd %v: %w", w.b.cli.Endpoints(), err)
	}
}

// decoded is a record value decoded into its endpoint, or why it is not one.
type decoded struct {
	ep  resolver.Endpoint
	err error
}

func decode(key, value []byte) decoded {
	rec, err := DecodeRecord(value)
	if err != nil {
		return decoded{err: err}
	}
	return decoded{ep: endpointOf(string(key), rec)}
}

// parallelDecode is the page size from which decoding is spread over the
// CPUs: JSON decoding is most of the cost of a large list.
const parallelDecode = 128

// decodeAll decodes the values of kvs, in parallel for large pages.
func decodeAll(kvs []*mvccpb.KeyValue) []decoded {
	out := make([]decoded, len(kvs))
	workers := min(runtime.GOMAXPROCS(0), 8, len(kvs)/parallelDecode)
	if workers <= 1 {
		for i, kv := range kvs {
			out[i] = decode(kv.Key, kv.Value)
		}
		return out
	}
	var wg sync.WaitGroup
	chunk := (len(kvs) + workers - 1) / workers
	for lo := 0; lo < len(kvs); lo += chunk {
		hi := min(lo+chunk, len(kvs))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				out[i] = decode(kvs[i].Key, kvs[i].Value)
			}
		})
	}
	wg.Wait()
	return out
}

// apply puts the endpoint of kv into entries, or removes its key when its
// value is not a record.
func (w *watch) apply(entries map[string]resolver.Endpoint, kv *mvccpb.KeyValue) {
	w.applyDecoded(entries, string(kv.Key), decode(kv.Key, kv.Value))
}

// remove forgets key k after a delete event.
func (w *watch) remove(k string) {
	delete(w.entries, k)
	delete(w.bad, k)
}

func (w *watch) applyDecoded(entries map[string]resolver.Endpoint, k string, d decoded) {
	if d.err != nil {
		delete(entries, k)
		if _, seen := w.bad[k]; !seen {
			w.bad[k] = struct{}{}
			w.log.Warn("skip record", "key", k, "err", d.err)
		}
		return
	}
	delete(w.bad, k)
	entries[k] = d.ep
}

// watch follows changes from the listed revision until the watch fails.
func (w *watch) watch(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := w.b.cli.Watch(clientv3.WithRequireLeader(wctx), w.prefix,
		clientv3.WithPrefix(), clientv3.WithRev(w.rev+1), clientv3.WithProgressNotify())

	var resync <-chan time.Time
	if w.b.opts.resync > 0 {
		t := time.NewTicker(w.b.opts.resync)
		defer t.Stop()
		resync = t.C
	}
	var holdC <-chan time.Time
	if w.held != nil {
		t := time.NewTimer(time.Until(w.heldUntil))
		defer t.Stop()
		holdC = t.C
	}
	c := &coalescer{w: w, window: coalesce}
	defer c.stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.pending:
			c.pending = nil
			c.flush()
		case <-holdC:
			holdC = nil
			c.dirty = true
			c.flush()
		case <-resync:
			if err := w.checkRewound(ctx); err != nil {
				c.flush()
				return err
			}
		case wr, ok := <-wch:
			if !ok {
				c.flush()
				return errors.New("watch channel closed")
			}
			changed, err := w.take(wr)
			if err != nil {
				c.flush()
				return err
			}
			if changed {
				c.changed()
			}
		}
	}
}

// coalesce is the shortest time between two updates pushed to gRPC: a
// burst of watch events within it becomes one update.
const coalesce = 20 * time.Millisecond

// take applies one watch response to the entries and reports whether they
// changed, or returns why the watch must start again.
func (w *watch) take(wr clientv3.WatchResponse) (changed bool, _ error) {
	if wr.CompactRevision != 0 {
		return false, fmt.Errorf("watch at %d: %w", w.rev+1, rpctypes.ErrCompacted)
	}
	if err := wr.Err(); err != nil {
		return false, fmt.Errorf("watch: %w", err)
	}
	if wr.Canceled {
		return false, errors.New("watch cancelled by the server")
	}
	for _, ev := range wr.Events {
		switch ev.Type {
		case mvccpb.PUT:
			w.apply(w.entries, ev.Kv)
		case mvccpb.DELETE:
			w.remove(string(ev.Kv.Key))
		}
		changed = true
	}
	if wr.Header.Revision > w.rev {
		w.rev = wr.Header.Revision
	}
	w.synced(w.rev)
	return changed, nil
}

// coalescer publishes a watch's changes at most once a window: the first
// change after a quiet window goes out at once, later ones when the window
// ends. The list just published does not count against the window. It
// lives in the watch's goroutine.
type coalescer struct {
	w       *watch
	window  time.Duration
	dirty   bool      // changes not yet published
	last    time.Time // last publish
	timer   *time.Timer
	pending <-chan time.Time // fires when the window ends; nil when none waits
}

// changed marks the entries changed and publishes them now or at the end
// of the window.
func (c *coalescer) changed() {
	c.dirty = true
	if c.pending != nil {
		return
	}
	if wait := c.window - time.Since(c.last); wait > 0 {
		if c.timer == nil {
			c.timer = time.NewTimer(wait)
		} else {
			c.timer.Reset(wait)
		}
		c.pending = c.timer.C
		return
	}
	c.flush()
}

// flush publishes the changes, if any.
func (c *coalescer) flush() {
	if c.dirty {
		c.w.publish()
		c.dirty, c.last = false, time.Now()
	}
}

func (c *coalescer) stop() {
	if c.timer != nil {
		c.timer.Stop()
	}
}

// checkRewound asks etcd for its revision and cluster and reports
// errRewound when the revision is below what was seen or the cluster
// changed: a watch on a replaced etcd waits forever for a revision that the
// new one reaches only much later.
func (w *watch) checkRewound(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := w.b.cli.Get(cctx, w.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return nil // The watch reports outages itself.
	}
	if resp.Header.Revision < w.rev || resp.Header.ClusterId != w.clusterID {
		return errRewound
	}
	return nil
}

// serviceOf returns the part of key k that tells services apart below the
// watched prefix: the first path segment when more follow (a whole-prefix
// view such as "services/"), else "" (a service's own prefix).
func (w *watch) serviceOf(k string) string {
	rest := strings.TrimPrefix(k, w.prefix)
	svc, _, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	return svc
}

// publish sorts the entries by address into a new state and wakes every
// resolver.
func (w *watch) publish() {
	src := w.entries
	switch {
	case len(src) > 0 || w.held == nil:
		w.held = nil
	case time.Now().Before(w.heldUntil):
		src = w.held
	default:
		w.log.Warn("no instance registered again; dropping the kept endpoints", "endpoints", len(w.held))
		w.held = nil
	}
	type item struct {
		key, service string
		ep           resolver.Endpoint
	}
	items := make([]item, 0, len(src))
	for k, ep := range src {
		items = append(items, item{key: k, service: w.serviceOf(k), ep: ep})
	}
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(a.ep.Addresses[0].Addr, b.ep.Addresses[0].Addr),
			cmp.Compare(a.service, b.service), cmp.Compare(a.key, b.key))
	})
	// Two keys of one service may carry one address: the lowest key wins,
	// whatever the order of events, and the other is logged once. Two
	// services on one address (a whole-prefix view) are both kept.
	eps := make([]resolver.Endpoint, 0, len(items))
	addrs := make([]resolver.Address, 0, len(items))
	var dupes map[string]struct{}
	for i, it := range items {
		if i > 0 && it.service == items[i-1].service && it.ep.Addresses[0].Addr == items[i-1].ep.Addresses[0].Addr {
			if dupes == nil {
				dupes = map[string]struct{}{}
			}
			dupes[it.key] = struct{}{}
			if _, logged := w.dupes[it.key]; !logged {
				w.log.Warn("two records of one address; using the lowest key", "key", it.key,
					"addr", it.ep.Addresses[0].Addr)
			}
			continue
		}
		eps = append(eps, it.ep)
		addrs = append(addrs, it.ep.Addresses[0])
	}
	w.dupes = dupes
	w.mu.Lock()
	defer w.mu.Unlock()
	w.published = true
	w.snap = snapshot{version: w.snap.version + 1, state: resolver.State{Endpoints: eps, Addresses: addrs}}
	w.status.Endpoints = len(eps)
	w.status.Skipped = len(w.bad)
	w.status.Updates++
	w.notifyLocked()
}

func (w *watch) notifyLocked() {
	for r := range w.subs {
		select {
		case r.notify <- struct{}{}:
		default:
		}
	}
}

// etcdResolver hands its watch's snapshots to one gRPC ClientConn.
type etcdResolver struct {
	w      *watch
	cc     resolver.ClientConn
	notify chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

func (r *etcdResolver) run(ctx context.Context) {
	defer r.wg.Done()
	var sent int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.notify:
		}
		r.w.mu.Lock()
		snap := r.w.snap
		r.w.mu.Unlock()
		if snap.version == sent {
			continue
		}
		sent = snap.version
		switch {
		case snap.err != nil:
			r.cc.ReportError(snap.err)
		case snap.version > 0:
			// An error means the balancer rejected the state (e.g. no
			// endpoints); the next change is pushed anyway.
			_ = r.cc.UpdateState(snap.state)
		}
	}
}

// ResolveNow does nothing: the watch pushes every change.
func (r *etcdResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops this resolver and, if it was the last of its watch, the watch.
func (r *etcdResolver) Close() {
	r.once.Do(func() {
		r.cancel()
		r.wg.Wait()
		r.w.b.release(r)
	})
}
