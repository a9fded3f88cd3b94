package framework

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/svckit/svckit/framework/lifecycle"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/serve"
)

// run is the state of one Run, shared by its actors.
type run struct {
	// hard is cancelled by a second signal: every wait of the stop ends
	// by it.
	hard     context.Context
	hardStop context.CancelFunc
	// clock is the one deadline of the stop, started by its first
	// interrupt (or by the registrar when the etcd client closes): every
	// wait of the stop ends by it.
	clock    *stopClock
	lis      net.Listener
	adminLis net.Listener     // nil without --admin
	cli      *clientv3.Client // the App's own etcd client, nil if given or unused
	reg      Registrar
	addr     string                   // advertised
	signals  *lifecycle.SignalHandler // nil WithoutSignals
	wg       sync.WaitGroup           // goroutines that outlive their actor

	mu     sync.Mutex
	failed []error
}

// fail records a failure of the stop (a deregistration, an abandoned actor,
// a trace flush) for Run to return. Actors call it concurrently.
func (r *run) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, err)
}

// failures returns what fail recorded.
func (r *run) failures() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// start binds the listeners and builds the registrar, so that a bad address
// or etcd setting fails before anything is registered, and makes the
// services SERVING.
func (a *App) start() (_ *run, err error) {
	cfg := a.opts.config
	r := &run{clock: &stopClock{budget: cfg.ShutdownTimeout + a.opts.propagationDelay}}
	r.hard, r.hardStop = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			err = errors.Join(err, r.close())
		}
	}()
	if r.lis, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("--listen %s: %w", cfg.Listen, err)
	}
	if cfg.Admin != "" {
		if r.adminLis, err = net.Listen("tcp", cfg.Admin); err != nil {
			return nil, fmt.Errorf("--admin %s: %w", cfg.Admin, err)
		}
	}
	if r.addr = cfg.Advertise; r.addr == "" {
		r.addr = r.lis.Addr().String()
	}
	cli := a.opts.etcdClient
	if cli == nil && a.opts.registrar == nil {
		cc, err := cfg.EtcdClientConfig()
		if err != nil {
			return nil, err
		}
		cc.Logger = a.log
		if r.cli, err = naming.NewClient(cc); err != nil {
			return nil, fmt.Errorf("--etcd: %w", err)
		}
		cli = r.cli
	}
	if r.reg, err = a.newRegistrar(cli, r.addr); err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.reg, a.addr = r.reg, r.addr
	if r.adminLis != nil {
		a.admin = r.adminLis.Addr().String()
	}
	a.mu.Unlock()
	a.srvMetrics.InitializeMetrics(a.grpc)
	for name := range a.grpc.GetServiceInfo() {
		a.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	return r, nil
}

// close ends what start began, once the actors have returned: it stops the
// signal handler, ends the goroutines the actors left, closes the App's own
// etcd client and the listeners. It returns the etcd client's failure.
func (r *run) close() error {
	if r.signals != nil {
		r.signals.Stop()
	}
	r.hardStop()
	r.wg.Wait()
	var err error
	if r.cli != nil {
		if cerr := r.cli.Close(); cerr != nil && !errors.Is(cerr, context.Canceled) {
			err = fmt.Errorf("close etcd client: %w", cerr)
		}
	}
	if r.adminLis != nil {
		_ = r.adminLis.Close()
	}
	if r.lis != nil {
		_ = r.lis.Close()
	}
	return err
}

// signalsActor ends the group on SIGINT or SIGTERM; a second one cancels
// r.hard, which cuts every wait of the stop short.
func (a *App) signalsActor(r *run) actor {
	h := lifecycle.NewSignalHandler()
	r.signals = h
	r.wg.Go(func() {
		select {
		case <-h.Hard():
			a.log.Warn("second signal: stopping now")
			r.hardStop()
		case <-r.hard.Done():
		}
	})
	return actor{"signals", h.Execute, h.Interrupt}
}

// contextActor ends the group when ctx ends.
func contextActor(ctx context.Context) actor {
	ctx, cancel := context.WithCancel(ctx)
	return actor{"context", func() error { <-ctx.Done(); return ctx.Err() }, func(error) { cancel() }}
}

// readinessActor is interrupted first, so that /readyz and health fail
// before the record goes.
func (a *App) readinessActor() actor {
	stop := make(chan struct{})
	return actor{"readiness", func() error { <-stop; return nil }, func(error) {
		a.stopping.Store(true)
		a.health.Shutdown()
		close(stop)
	}}
}

// registrarActor registers the instance once the listener is bound, and
// removes it before the drain: it deregisters and waits out the
// propagation delay before it returns, so the gRPC server is interrupted
// only after both. Its context ends only by the group's interrupt, never by
// ctx directly: the readiness actor must have been interrupted first.
func (a *App) registrarActor(ctx context.Context, r *run) actor {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return actor{"registrar", func() error {
		tctx, tcancel := context.WithTimeout(rctx, a.opts.registerTimeout)
		err := r.reg.Register(tctx)
		tcancel()
		if err != nil {
			if rctx.Err() != nil {
				return nil // stopped while registering; nothing was left
			}
			return fmt.Errorf("register %s at %s (--etcd %s): %w", a.name, r.addr, strings.Join(a.opts.config.Etcd, ","), err)
		}
		a.log.Info("serving", "addr", r.addr, "admin", a.AdminAddr())
		close(a.started)
		select {
		case <-rctx.Done():
		case <-r.reg.Done():
			a.deregister(r)
			return errors.New("registrar stopped: etcd client closed")
		}
		a.deregister(r)
		t := time.NewTimer(min(a.opts.propagationDelay, time.Until(r.clock.deadline())))
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.hard.Done():
		}
		return nil
	}, func(error) { cancel() }}
}

// deregister removes the instance's record within its share of the
// shutdown timeout (deregisterShare), and never eats into the propagation
// delay: an unreachable etcd must not leave the drain and the actors
// nothing.
func (a *App) deregister(r *run) {
	end := r.clock.deadline()
	dend := earlier(end.Add(-r.clock.budget).Add(deregisterShare(a.opts.config.ShutdownTimeout)),
		end.Add(-a.opts.propagationDelay))
	ctx, cancel := context.WithDeadline(r.hard, dend)
	defer cancel()
	if err := r.reg.Deregister(ctx); err != nil {
		r.fail(fmt.Errorf("deregister: %w", err))
	}
}

// grpcActor serves, then stops gracefully until the stop's deadline, and
// hard after it.
func (a *App) grpcActor(r *run) actor {
	return actor{"grpc", func() error { return a.grpc.Serve(r.lis) }, func(error) {
		ctx, cancel := context.WithDeadline(r.hard, r.clock.deadline())
		defer cancel()
		if err := serve.Stop(ctx, a.grpc); errors.Is(err, context.DeadlineExceeded) {
			a.log.Warn("graceful stop ran out of the shutdown timeout; closed connections", "timeout", a.opts.config.ShutdownTimeout)
		}
	}}
}

// adminActor serves the admin endpoints, and shuts them down within 2 s
// and the stop's deadline.
func (a *App) adminActor(r *run) actor {
	srv := &http.Server{Handler: a.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
	return actor{"admin", func() error {
		if err := srv.Serve(r.adminLis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) {
		ctx, cancel := context.WithDeadline(r.hard, earlier(time.Now().Add(2*time.Second), r.clock.deadline()))
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
	}}
}

// userActor bounds an actor added with Add (see bound): one that does not
// stop in time is abandoned and named in Run's error.
func (a *App) userActor(r *run, act actor) actor {
	execute, interrupt := bound(act, r.clock, a.opts.config.ShutdownTimeout, r.hard.Done(), func(err error) {
		a.log.Error("actor did not stop; abandoned", "actor", act.name, "err", err)
		r.fail(err)
	})
	return actor{act.name, execute, interrupt}
}

// flushTraces flushes the tracer provider, if it has ForceFlush, within 5 s
// and stopMargin past the stop's deadline.
func (a *App) flushTraces(r *run) {
	f, ok := a.opts.tracerProvider.(interface{ ForceFlush(context.Context) error })
	if !ok || f == nil {
		return
	}
	ctx, cancel := context.WithDeadline(r.hard, earlier(time.Now().Add(5*time.Second), r.clock.deadline().Add(stopMargin)))
	defer cancel()
	if err := f.ForceFlush(ctx); err != nil {
		r.fail(fmt.Errorf("flush traces: %w", err))
	}
}

// Margins past the stop's deadline. An actor added with Add has until
// actorGrace after the deadline, or after its interrupt if that is later:
// one interrupted when the drain or an actor before it used the whole budget
// and that stops at once must not be reported stuck. Nothing of the stop
// waits past stopMargin after the deadline, the trace flush included.
const (
	actorGrace = 100 * time.Millisecond
	stopMargin = time.Second
)

// deregisterShare is how much of the shutdown timeout the deregistration
// may use: a third of it, and at most 2 s. A revoke against a healthy etcd
// takes milliseconds; one against an unreachable etcd blocks until its
// deadline, and the rest of the timeout belongs to the gRPC drain and the
// actors added with Add.
func deregisterShare(timeout time.Duration) time.Duration {
	return min(2*time.Second, timeout/3)
}

// stopClock is the deadline of a stop: budget after the first call of
// deadline.
type stopClock struct {
	budget time.Duration
	once   sync.Once
	at     time.Time
}

// deadline returns the stop's deadline, setting it on the first call.
func (c *stopClock) deadline() time.Time {
	c.once.Do(func() { c.at = time.Now().Add(c.budget) })
	return c.at
}

// earlier returns the earlier of a and b.
func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// group is a lifecycle.Group whose stop starts clock at its first interrupt.
type group struct {
	lifecycle.Group
	clock *stopClock
}

// add adds act, whose interrupt first starts the stop's clock.
func (g *group) add(act actor) {
	g.Group.Add(act.name, act.execute, func(err error) {
		g.clock.deadline()
		act.interrupt(err)
	})
}

// bound returns act's funcs such that, once interrupted, they return by the
// clock's deadline or the interrupt, whichever is later, plus actorGrace (but
// never past stopMargin after the deadline), or when hard closes.
// If act's own funcs have not both returned by then, they are abandoned,
// stuck is called with an error naming act (and timeout, the configured
// shutdown timeout), and the returned execute returns nil: run.Group keeps
// only the error of the first actor to return, so the caller collects
// stuck's.
func bound(act actor, clock *stopClock, timeout time.Duration, hard <-chan struct{}, stuck func(error)) (execute func() error, interrupt func(error)) {
	returned := make(chan struct{}) // act.execute returned
	abandoned := make(chan struct{})
	var err error
	execute = func() error {
		go func() {
			err = act.execute()
			close(returned)
		}()
		select {
		case <-returned:
			return err
		case <-abandoned:
			return nil
		}
	}
	interrupt = func(cause error) {
		interrupted := make(chan struct{}) // act.interrupt returned
		go func() {
			act.interrupt(cause)
			close(interrupted)
		}()
		end := clock.deadline().Add(actorGrace)
		if late := time.Now().Add(actorGrace); late.After(end) {
			end = earlier(late, clock.deadline().Add(stopMargin))
		}
		t := time.NewTimer(time.Until(end))
		defer t.Stop()
		for ret, intr := returned, interrupted; ret != nil || intr != nil; {
			select {
			case <-ret:
				ret = nil
			case <-intr:
				intr = nil
			case <-t.C:
				stuck(&lifecycle.ActorError{Actor: act.name, Err: fmt.Errorf("did not stop by the shutdown deadline (--shutdown-timeout %s)", timeout)})
				close(abandoned)
				return
			case <-hard:
				stuck(&lifecycle.ActorError{Actor: act.name, Err: errors.New("did not stop before the hard stop")})
				close(abandoned)
				return
			}
		}
	}
	return execute, interrupt
}
