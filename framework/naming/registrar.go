package naming

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// State is where a Registrar's record stands.
type State int

const (
	// StateIdle: Register has not succeeded yet.
	StateIdle State = iota
	// StateRegistered: the record is in etcd and its lease is kept alive.
	StateRegistered
	// StateLost: the lease or the key was lost; registering again.
	StateLost
	// StateStopped: deregistered, or the etcd client was closed.
	StateStopped
)

func (s State) String() string {
	switch s {
	case StateIdle:
		return "idle"
	case StateRegistered:
		return "registered"
	case StateLost:
		return "lost"
	case StateStopped:
		return "stopped"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Status is a snapshot of a Registrar, for health, readiness and metrics.
type Status struct {
	State State
	Key   string
	// LeaseID is the current lease, 0 when none.
	LeaseID clientv3.LeaseID
	// Registrations counts successful puts of the record, the first one
	// included; Registrations-1 is the number of re-registrations.
	Registrations int64
	// Losses counts lease or key losses.
	Losses int64
	// RegisteredAt is the time of the last successful put.
	RegisteredAt time.Time
	// LastKeepAlive is the time of the last keepalive response.
	LastKeepAlive time.Time
	// KeepAlives counts keepalive responses consumed.
	KeepAlives int64
	// LastError is the last error met, nil after a successful registration.
	LastError error
}

// Instance is what a Registrar registers.
type Instance struct {
	// Service is the service name, e.g. "fileserver".
	Service string
	// Addr is the address clients dial, host:port.
	Addr     string
	Metadata Metadata
}

// RegistrarOption configures a Registrar.
type RegistrarOption func(*registrarOptions)

type registrarOptions struct {
	prefix      string
	ttl         time.Duration
	logger      *slog.Logger
	backoff     Backoff
	stopTimeout time.Duration
	beforeWatch func() // tests: called in hold before each watch of the key
}

// WithPrefix sets the key prefix; default DefaultPrefix.
func WithPrefix(p string) RegistrarOption { return func(o *registrarOptions) { o.prefix = p } }

// WithTTL sets the lease TTL, rounded up to whole seconds; default 10s.
func WithTTL(d time.Duration) RegistrarOption { return func(o *registrarOptions) { o.ttl = d } }

// WithLogger sets the logger; default slog.Default().
func WithLogger(l *slog.Logger) RegistrarOption { return func(o *registrarOptions) { o.logger = l } }

// WithStopTimeout bounds Deregister when its context has no deadline;
// default 5s.
func WithStopTimeout(d time.Duration) RegistrarOption {
	return func(o *registrarOptions) { o.stopTimeout = d }
}

// Registrar keeps one instance registered in etcd under a lease.
//
// Its methods are safe for concurrent use. Of any number of concurrent
// Register calls at most one registers; the others return an error at once.
// Deregister stops the Registrar for good: it cancels a Register in
// progress, waits for it, and revokes every lease it may have left, so that
// once any Deregister call returns no record of this Registrar is left in
// etcd (unless the revoke itself failed, which it returns; the lease then
// expires after its TTL). Register after or during Deregister returns an
// error and writes nothing.
type Registrar struct {
	cli   *clientv3.Client
	inst  Instance
	key   string
	value string
	ttl   int64
	opts  registrarOptions
	log   *slog.Logger

	mu          sync.Mutex
	status      Status
	registering chan struct{} // closed when the Register in progress returns; nil if none
	regCancel   context.CancelFunc
	started     bool               // Register succeeded and keep runs
	stopping    bool               // Deregister was called
	lease       clientv3.LeaseID   // lease of the record, 0 when none
	stale       clientv3.LeaseID   // a lost lease not yet revoked, 0 when none
	granted     []clientv3.LeaseID // leases of a put in progress or failed that may hold the record, not yet revoked
	rev         int64              // revision of the last put of the record
	cancel      context.CancelFunc // stops keep
	done        chan struct{}      // closed by keep, or by Deregister if keep never ran
	stopped     chan struct{}      // closed when the first Deregister has finished
	stopErr     error
}

// NewRegistrar validates inst and the options and returns a Registrar. It
// does not touch etcd.
func NewRegistrar(cli *clientv3.Client, inst Instance, opts ...RegistrarOption) (*Registrar, error) {
	o := registrarOptions{
		prefix:      DefaultPrefix,
		ttl:         10 * time.Second,
		logger:      slog.Default(),
		backoff:     defaultBackoff(),
		stopTimeout: 5 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if cli == nil {
		return nil, fmt.Errorf("naming: nil etcd client: %w", ErrInvalid)
	}
	if err := ValidateService(inst.Service); err != nil {
		return nil, err
	}
	if err := ValidatePrefix(o.prefix); err != nil {
		return nil, err
	}
	if o.ttl < time.Second {
		return nil, fmt.Errorf("naming: ttl %s is below 1s: %w", o.ttl, ErrInvalid)
	}
	if o.backoff.Min <= 0 || o.backoff.Max < o.backoff.Min {
		return nil, fmt.Errorf("naming: backoff %v: %w", o.backoff, ErrInvalid)
	}
	if o.stopTimeout <= 0 {
		return nil, fmt.Errorf("naming: stop timeout %s: %w", o.stopTimeout, ErrInvalid)
	}
	v, err := Record{Addr: inst.Addr, Metadata: inst.Metadata}.Encode()
	if err != nil {
		return nil, err
	}
	key := Key(o.prefix, inst.Service, inst.Addr)
	r := &Registrar{
		cli:     cli,
		inst:    inst,
		key:     key,
		value:   string(v),
		ttl:     int64((o.ttl + time.Second - 1) / time.Second),
		opts:    o,
		log:     o.logger.With("component", "registrar", "service", inst.Service, "key", key),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	r.status.Key = key
	return r, nil
}

// Key returns the etcd key of the record.
func (r *Registrar) Key() string { return r.key }

// Status returns a snapshot of the registrar.
func (r *Registrar) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Done is closed when the registrar stops keeping its record: after
// Deregister, or when its etcd client is closed.
func (r *Registrar) Done() <-chan struct{} { return r.done }

// errStopped is returned by Register once Deregister has been called.
var errStopped = errors.New("registrar stopped by Deregister")

// Register grants a lease and puts the record once, within ctx, then keeps
// it in the background until Deregister. It returns an error, and does
// nothing, if another Register is in progress or has succeeded, or if
// Deregister has been called; a Deregister during Register makes it fail and
// leaves nothing behind. After any other error Register may be called
// again, and nothing was left registered, unless a put that failed here was
// applied all the same and its lease could not be revoked within a second:
// Deregister revokes that lease too.
func (r *Registrar) Register(ctx context.Context) error {
	r.mu.Lock()
	switch {
	case r.stopping:
		r.mu.Unlock()
		return fmt.Errorf("naming: register %s: %w", r.key, errStopped)
	case r.started || r.registering != nil:
		r.mu.Unlock()
		return fmt.Errorf("naming: register %s: registrar already started", r.key)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	registering := make(chan struct{})
	r.registering, r.regCancel = registering, cancel
	r.mu.Unlock()

	err := r.put(ctx)

	r.mu.Lock()
	defer r.mu.Unlock()
	r.registering, r.regCancel = nil, nil
	// Deregister waits for this close before it revokes r.lease, so a
	// record put after it began is revoked by it.
	defer close(registering)
	if err == nil && r.stopping {
		err = fmt.Errorf("naming: register %s: %w", r.key, errStopped)
	}
	if err != nil {
		r.status.LastError = err
		return err
	}
	kctx, kcancel := context.WithCancel(context.Background())
	r.started, r.cancel = true, kcancel
	r.log.Info("registered", "addr", r.inst.Addr, "lease_id", int64(r.lease), "ttl_s", r.ttl)
	go r.keep(kctx)
	return nil
}

// put grants a new lease and puts the record under it. On failure it revokes
// the new lease so that nothing is left behind; a put that failed here may
// still have been applied (its context ended, or its reply was lost, after
// etcd took it), so until that revoke succeeds the lease stays in r.granted
// for Deregister to revoke.
func (r *Registrar) put(ctx context.Context) error {
	g, err := r.cli.Grant(ctx, r.ttl)
	if err != nil {
		return fmt.Errorf("naming: grant lease for %s: %w", r.key, err)
	}
	r.mu.Lock()
	r.granted = append(r.granted, g.ID)
	r.mu.Unlock()
	resp, err := r.cli.Put(ctx, r.key, r.value, clientv3.WithLease(g.ID))
	if err != nil {
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, rerr := r.cli.Revoke(rctx, g.ID)
		cancel()
		if rerr == nil || errors.Is(rerr, rpctypes.ErrLeaseNotFound) {
			r.mu.Lock()
			r.granted = slices.DeleteFunc(r.granted, func(id clientv3.LeaseID) bool { return id == g.ID })
			r.mu.Unlock()
		}
		return fmt.Errorf("naming: put %s: %w", r.key, err)
	}
	now := time.Now()
	r.mu.Lock()
	// The record is under g.ID now: the leases of earlier failed puts no
	// longer hold it.
	r.granted = r.granted[:0]
	r.lease = g.ID
	r.rev = resp.Header.Revision
	r.status.State = StateRegistered
	r.status.LeaseID = g.ID
	r.status.Registrations++
	r.status.RegisteredAt = now
	r.status.LastKeepAlive = now
	r.status.LastError = nil
	r.mu.Unlock()
	return nil
}

func (r *Registrar) setErr(err error) {
	r.mu.Lock()
	r.status.LastError = err
	r.mu.Unlock()
}

// keep keeps the record until ctx is cancelled or the client is closed,
// registering again after every loss.
func (r *Registrar) keep(ctx context.Context) {
	defer close(r.done)
	for {
		reason := r.hold(ctx)
		if ctx.Err() != nil || r.cli.Ctx().Err() != nil {
			r.mu.Lock()
			r.status.State = StateStopped
			r.mu.Unlock()
			return
		}
		r.mu.Lock()
		old := r.lease
		r.lease, r.stale = 0, old
		r.status.State = StateLost
		r.status.LeaseID = 0
		r.status.Losses++
		r.mu.Unlock()
		r.log.Warn("registration lost; registering again", "lease_id", int64(old), "reason", reason)

		for attempt := 0; ; attempt++ {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := r.put(pctx)
			cancel()
			if err == nil {
				break
			}
			r.setErr(err)
			if attempt == 0 || attempt%10 == 0 {
				r.log.Warn("register again failed; retrying", "attempt", attempt+1, "err", err)
			}
			if !sleep(ctx, r.opts.backoff.Delay(attempt)) || r.cli.Ctx().Err() != nil {
				r.mu.Lock()
				r.status.State = StateStopped
				r.mu.Unlock()
				return
			}
		}
		// The old lease may still live (etcd was away less than the TTL on
		// the server's clock, or the key was deleted by someone else).
		// Revoke it only now that the key is under the new lease: revoking
		// it first would delete the key and make clients drop the instance.
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		if _, err := r.cli.Revoke(rctx, old); err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound) {
			r.mu.Lock()
			r.stale = 0
			r.mu.Unlock()
		}
		cancel()
		st := r.Status()
		r.log.Warn("registered again", "lease_id", int64(st.LeaseID), "registrations", st.Registrations)
	}
}

// hold keeps the current lease alive and watches the key until either is
// lost or ctx ends, and returns why it stopped.
func (r *Registrar) hold(ctx context.Context) string {
	r.mu.Lock()
	lease, rev := r.lease, r.rev
	r.mu.Unlock()

	// clientv3's Watch blocks until it has a stream, for as long as etcd
	// is away: it runs aside, so that a lease lost meanwhile is seen. The
	// cancel ends a Watch still waiting, before the wait for it.
	hctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	kach, err := r.cli.KeepAlive(hctx, lease)
	if err != nil {
		return "keepalive: " + err.Error()
	}
	watching := r.watchAside(hctx, &wg, rev+1)
	var wch clientv3.WatchChan
	var rewatch <-chan time.Time
	rewatches := 0
	for {
		select {
		case <-ctx.Done():
			return "stopped"
		case wch = <-watching:
			watching = nil
		case ka, ok := <-kach:
			if !ok {
				return "keepalive channel closed (lease expired or revoked)"
			}
			if ka.TTL <= 0 {
				return "lease expired"
			}
			r.mu.Lock()
			r.status.LastKeepAlive = time.Now()
			r.status.KeepAlives++
			r.mu.Unlock()
		case <-rewatch:
			rewatch = nil
			// The watch failed; see whether the key is still there before
			// watching again from where this look saw it.
			gctx, gcancel := context.WithTimeout(hctx, 2*time.Second)
			resp, err := r.cli.Get(gctx, r.key)
			gcancel()
			if err != nil {
				rewatches++
				rewatch = time.After(r.opts.backoff.Delay(rewatches))
				continue
			}
			if len(resp.Kvs) == 0 {
				return "key deleted"
			}
			rewatches = 0
			watching = r.watchAside(hctx, &wg, resp.Header.Revision+1)
		case wr, ok := <-wch:
			if !ok || wr.Err() != nil || wr.Canceled {
				if ctx.Err() != nil {
					return "stopped"
				}
				wch = nil
				rewatches++
				rewatch = time.After(r.opts.backoff.Delay(rewatches))
				continue
			}
			for _, ev := range wr.Events {
				switch {
				case ev.Type == mvccpb.DELETE:
					return "key deleted"
				case clientv3.LeaseID(ev.Kv.Lease) != lease:
					r.log.Warn("key written by another lease", "lease_id", int64(lease), "other_lease_id", ev.Kv.Lease)
				}
			}
		}
	}
}

// watchAside starts a watch of the key from revision from, in a goroutine
// of wg, and returns where its channel will arrive.
func (r *Registrar) watchAside(ctx context.Context, wg *sync.WaitGroup, from int64) <-chan clientv3.WatchChan {
	if r.opts.beforeWatch != nil {
		r.opts.beforeWatch()
	}
	started := make(chan clientv3.WatchChan, 1)
	wg.Go(func() { started <- r.cli.Watch(clientv3.WithRequireLeader(ctx), r.key, clientv3.WithRev(from)) })
	return started
}

// Deregister stops the registrar for good: it cancels a Register in
// progress and waits for it, stops keeping the record, and revokes the lease,
// which deletes the key if it is still this registrar's, and any lease of a
// put that failed but may have been applied (a Register cancelled by this
// Deregister after etcd took its put) whose own revoke failed. The revoke is
// bounded by ctx, or by the stop timeout if ctx has no deadline. Concurrent
// and later calls wait for the first to finish (or for their ctx to end) and
// return its result, so that when any call returns nil no record is left.
func (r *Registrar) Deregister(ctx context.Context) error {
	r.mu.Lock()
	if r.stopping {
		r.mu.Unlock()
		select {
		case <-r.stopped:
			return r.stopErr
		case <-ctx.Done():
			return fmt.Errorf("naming: deregister %s: %w", r.key, ctx.Err())
		}
	}
	r.stopping = true
	registering, regCancel := r.registering, r.regCancel
	r.mu.Unlock()
	defer close(r.stopped)

	if registering != nil {
		regCancel()
		<-registering
	}
	// No Register can start keep from here on.
	r.mu.Lock()
	started, cancel := r.started, r.cancel
	r.mu.Unlock()
	if started {
		cancel()
		<-r.done
	} else {
		close(r.done)
	}

	if _, ok := ctx.Deadline(); !ok {
		var c context.CancelFunc
		ctx, c = context.WithTimeout(ctx, r.opts.stopTimeout)
		defer c()
	}
	r.mu.Lock()
	leases := append([]clientv3.LeaseID{r.lease, r.stale}, r.granted...)
	r.lease, r.stale, r.granted = 0, 0, nil
	r.status.State = StateStopped
	r.status.LeaseID = 0
	r.mu.Unlock()
	var errs []error
	for _, lease := range leases {
		if lease == 0 {
			continue
		}
		// Revoking the lease deletes the key in the same write, and only if
		// the key is still under this lease: during a restart on the same
		// address the new instance may own it already.
		if _, err := r.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			errs = append(errs, fmt.Errorf("naming: revoke lease %x of %s: %w", int64(lease), r.key, err))
			continue
		}
		r.log.Info("deregistered", "lease_id", int64(lease))
	}
	r.stopErr = errors.Join(errs...)
	return r.stopErr
}
