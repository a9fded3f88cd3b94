package framework

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/orca"
	"google.golang.org/grpc/reflection"

	"github.com/svckit/svckit/framework/internal/tracing"
	"github.com/svckit/svckit/framework/lifecycle"
	"github.com/svckit/svckit/framework/naming"
)

// App is a gRPC service that registers itself in etcd while it serves.
type App struct {
	name    string
	cfg     Config
	opts    options
	log     *slog.Logger
	grpc    *grpc.Server
	health  *health.Server
	metrics *prometheus.Registry

	actors []actor

	mu       sync.Mutex
	reg      Registrar
	addr     string
	admin    string
	started  chan struct{}
	ran      bool
	stopping atomic.Bool

	srvMetrics *grpcprom.ServerMetrics
}

type actor struct {
	name      string
	execute   func() error
	interrupt func(error)
}

// New returns an App for the service name. It validates the name, the
// configuration and the options, and touches neither network nor etcd.
func New(name string, opts ...Option) (*App, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := naming.ValidateService(name); err != nil {
		return nil, fmt.Errorf("framework: %w", err)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	var cfg Config
	if o.config != nil {
		cfg = *o.config
	} else {
		cfg = DefaultConfig()
		if err := cfg.ApplyEnv(nil); err != nil {
			return nil, fmt.Errorf("framework: %w", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("framework: %w", err)
	}
	log := o.logger.With("service", name)
	a := &App{
		name:    name,
		cfg:     cfg,
		opts:    o,
		log:     log,
		health:  health.NewServer(),
		metrics: prometheus.NewRegistry(),
		started: make(chan struct{}),
	}

	srvMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	if t := tracing.New(o.tracerProvider); t != nil {
		unary, stream = append(unary, t.UnaryServer()), append(stream, t.StreamServer())
	}
	unary = append(append(unary, srvMetrics.UnaryServerInterceptor(), logUnary(log), recoverUnary(log)), o.unary...)
	stream = append(append(stream, srvMetrics.StreamServerInterceptor(), logStream(log), recoverStream(log)), o.stream...)
	var load *loadReporter
	if o.orca {
		load = newLoadReporter()
		unary, stream = append([]grpc.UnaryServerInterceptor{load.unary()}, unary...), append([]grpc.StreamServerInterceptor{load.stream()}, stream...)
	}
	sopts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxConcurrentStreams(o.maxStreams),
		grpc.MaxRecvMsgSize(o.maxRecvMsgSize),
		grpc.MaxSendMsgSize(o.maxSendMsgSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Connections are recycled after about 30 minutes (gRPC adds ±10 %
		// jitter), so that clients rebalance onto instances started since,
		// with 5 minutes for the calls in flight to end.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second,
			MaxConnectionAge: 30 * time.Minute, MaxConnectionAgeGrace: 5 * time.Minute}),
	}
	if cfg.TLSCert != "" {
		creds, err := ServerTLS(cfg.TLSCert, cfg.TLSKey, cfg.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("framework: %w", err)
		}
		sopts = append(sopts, grpc.Creds(creds))
	}
	sopts = append(sopts, o.serverOptions...)
	if load != nil {
		// The ORCA interceptors attach a report to the trailer only of
		// calls whose handler asked for the call's recorder: ask for it.
		sopts = append(sopts, orca.CallMetricsServerOption(load.rec),
			grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				orca.CallMetricsRecorderFromContext(ctx)
				return h(ctx, req)
			}),
			grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				orca.CallMetricsRecorderFromContext(ss.Context())
				return h(srv, ss)
			}))
	}
	a.grpc = grpc.NewServer(sopts...)
	if load != nil {
		if err := orca.Register(a.grpc, orca.ServiceOptions{ServerMetricsProvider: load.rec}); err != nil {
			return nil, fmt.Errorf("framework: orca: %w", err)
		}
		a.Add("orca", load.run, func(error) { close(load.stop) })
	}
	healthpb.RegisterHealthServer(a.grpc, a.health)
	reflection.Register(a.grpc)

	a.metrics.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		srvMetrics,
		newRegistrarCollector(a),
	)
	a.srvMetrics = srvMetrics
	return a, nil
}

// GRPC returns the server to register handlers on before Run.
func (a *App) GRPC() *grpc.Server { return a.grpc }

// Name returns the service name.
func (a *App) Name() string { return a.name }

// Add adds an actor that runs beside the server and is interrupted after
// the gRPC server has stopped, in the order added. Call it before Run.
//
// Once interrupted, the actor's execute and interrupt must return by the
// stop's deadline (--shutdown-timeout plus the propagation delay after the
// stop began, see Run) plus 100 ms, or 100 ms after its interrupt if that
// is later (but at most 1 s past the deadline), cut short by a hard stop: the
// actors share the deadline with the drain before them. An actor that
// overruns it is abandoned: its goroutines are left running, the shutdown
// goes on, and Run's error names it with a *lifecycle.ActorError.
func (a *App) Add(name string, execute func() error, interrupt func(error)) {
	a.actors = append(a.actors, actor{name, execute, interrupt})
}

// Started is closed once the App serves and its instance is registered.
func (a *App) Started() <-chan struct{} { return a.started }

// Addr returns the advertised gRPC address once listening, else "".
func (a *App) Addr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.addr
}

// AdminAddr returns the bound admin address once listening, else "".
func (a *App) AdminAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.admin
}

// Ready reports whether the App can serve now, which is what /readyz
// answers: it has started (listening, registered once) and no stop has
// begun. A registration lost afterwards leaves it ready, as the instance
// still serves the clients that know it (see /readyz, the svckit_registered
// metric and the logs for the registration), unless
// WithReadinessRequiresRegistration.
func (a *App) Ready() bool {
	ready, _ := a.readiness()
	return ready
}

// readiness returns whether the App is ready and a line on why not, or on
// its registration when it is.
func (a *App) readiness() (ready bool, detail string) {
	select {
	case <-a.started:
	default:
		return false, "starting"
	}
	if a.stopping.Load() {
		return false, "stopping"
	}
	reg := a.registrar()
	state := "not registered"
	if er, ok := reg.(etcdRegistrar); ok {
		st := er.Status()
		state = st.State.String()
		if st.State != naming.StateRegistered && st.LastError != nil {
			state += " (" + st.LastError.Error() + ")"
		}
	} else if reg.Registered() {
		state = "registered"
	}
	if a.opts.readyNeedsReg && !reg.Registered() {
		return false, "registration " + state
	}
	return true, "registration " + state
}

func (a *App) registrar() Registrar {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reg
}

// Run serves until ctx ends, a signal arrives, or a part fails, then stops
// in order (see the package doc). It returns nil after a clean stop by
// signal or context, and otherwise the first failure, naming the part,
// joined with any failed cleanup. Run may be called once.
//
// The whole stop has one deadline, set when it begins: the shutdown
// timeout (--shutdown-timeout) plus the propagation delay. Deregistration
// and the propagation delay, the gRPC drain, the admin server's shutdown
// and the actors added with Add all end by it (the actors with a margin, see
// Add); what is still running then is closed without waiting or abandoned.
// Deregistration gets at most a third of the shutdown timeout, and no more
// than 2 s, so an unreachable etcd leaves the drain and the actors the rest.
// The trace flush, with a tracer provider that has ForceFlush, may go on
// for up to 1 s past it. So Run returns at most the shutdown timeout plus
// the propagation delay plus 1 s after the stop began, or at once after a
// second signal.
func (a *App) Run(ctx context.Context) (err error) {
	a.mu.Lock()
	if a.ran {
		a.mu.Unlock()
		return errors.New("framework: Run called twice")
	}
	a.ran = true
	a.mu.Unlock()

	// Listen first: a bad address fails before anything is registered.
	lis, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", a.cfg.Listen, err)
	}
	defer lis.Close()
	var adminLis net.Listener
	if a.cfg.Admin != "" {
		adminLis, err = net.Listen("tcp", a.cfg.Admin)
		if err != nil {
			return fmt.Errorf("--admin %s: %w", a.cfg.Admin, err)
		}
		defer adminLis.Close()
	}
	addr := a.cfg.Advertise
	if addr == "" {
		addr = lis.Addr().String()
	}

	cli := a.opts.etcdClient
	var cleanups []error
	if cli == nil && a.opts.registrar == nil {
		var cc naming.ClientConfig
		if cc, err = a.cfg.EtcdClientConfig(); err != nil {
			return err
		}
		cc.Logger = a.log
		cli, err = naming.NewClient(cc)
		if err != nil {
			return fmt.Errorf("--etcd: %w", err)
		}
		defer func() {
			if cerr := cli.Close(); cerr != nil && !errors.Is(cerr, context.Canceled) {
				err = errors.Join(err, fmt.Errorf("close etcd client: %w", cerr))
			}
		}()
	}
	reg, err := a.newRegistrar(cli, addr)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.reg, a.addr = reg, addr
	if adminLis != nil {
		a.admin = adminLis.Addr().String()
	}
	a.mu.Unlock()
	a.srvMetrics.InitializeMetrics(a.grpc)

	// hard is cancelled by a second signal: every wait in the shutdown is
	// bounded by it.
	hard, hardStop := context.WithCancel(context.Background())
	defer hardStop()

	for name := range a.grpc.GetServiceInfo() {
		a.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}

	// clock is the one deadline of the stop, started by its first interrupt
	// (or by the registrar when the etcd client closes): every wait of the
	// stop ends by it.
	clock := &stopClock{budget: a.cfg.ShutdownTimeout + a.opts.propagationDelay}
	var g group
	g.clock = clock
	if a.opts.signals {
		h := lifecycle.NewSignalHandler()
		defer h.Stop()
		go func() {
			select {
			case <-h.Hard():
				a.log.Warn("second signal: stopping now")
				hardStop()
			case <-hard.Done():
			}
		}()
		g.Add("signals", h.Execute, h.Interrupt)
	}
	{
		ctx, cancel := context.WithCancel(ctx)
		g.Add("context", func() error { <-ctx.Done(); return ctx.Err() }, func(error) { cancel() })
	}

	// Readiness: interrupted first, so /readyz and health fail before the
	// record goes.
	readyStop := make(chan struct{})
	g.Add("readiness", func() error { <-readyStop; return nil }, func(error) {
		a.stopping.Store(true)
		a.health.Shutdown()
		close(readyStop)
	})

	// Registration: after the listener is bound; removed before the drain.
	// The actor deregisters and waits out the propagation delay before it
	// returns, so the gRPC server is interrupted only after both.
	// rctx ends only by the group's interrupt, never by ctx directly: the
	// readiness actor must have been interrupted first.
	rctx, rcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer rcancel()
	g.Add("registrar", func() error {
		tctx, cancel := context.WithTimeout(rctx, a.opts.registerTimeout)
		err := reg.Register(tctx)
		cancel()
		if err != nil {
			if rctx.Err() != nil {
				return nil // stopped while registering; nothing was left
			}
			return fmt.Errorf("register %s at %s (--etcd %s): %w", a.name, addr, strings.Join(a.cfg.Etcd, ","), err)
		}
		a.log.Info("serving", "addr", addr, "admin", a.AdminAddr())
		close(a.started)
		var lost error
		select {
		case <-rctx.Done():
		case <-reg.Done():
			lost = errors.New("registrar stopped: etcd client closed")
		}
		// The deregistration gets at most its share of the shutdown timeout
		// (deregisterShare) and never eats into the propagation delay: an
		// unreachable etcd must not leave the drain and the actors nothing.
		end := clock.deadline()
		dend := earlier(end.Add(-a.cfg.ShutdownTimeout-a.opts.propagationDelay).Add(deregisterShare(a.cfg.ShutdownTimeout)),
			end.Add(-a.opts.propagationDelay))
		dctx, cancel := context.WithDeadline(hard, dend)
		if err := reg.Deregister(dctx); err != nil {
			cleanups = append(cleanups, fmt.Errorf("deregister: %w", err))
		}
		cancel()
		if lost != nil {
			return lost
		}
		t := time.NewTimer(min(a.opts.propagationDelay, time.Until(end)))
		defer t.Stop()
		select {
		case <-t.C:
		case <-hard.Done():
		}
		return nil
	}, func(error) { rcancel() })

	g.Add("grpc", func() error {
		return a.grpc.Serve(lis)
	}, func(error) {
		done := make(chan struct{})
		go func() { a.grpc.GracefulStop(); close(done) }()
		t := time.NewTimer(time.Until(clock.deadline()))
		defer t.Stop()
		select {
		case <-done:
			return
		case <-t.C:
			a.log.Warn("graceful stop ran out of the shutdown timeout; closing connections", "timeout", a.cfg.ShutdownTimeout)
		case <-hard.Done():
		}
		a.grpc.Stop()
		<-done
	})

	if adminLis != nil {
		srv := &http.Server{Handler: a.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
		g.Add("admin", func() error {
			if err := srv.Serve(adminLis); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}, func(error) {
			sctx, cancel := context.WithDeadline(hard, earlier(time.Now().Add(2*time.Second), clock.deadline()))
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				_ = srv.Close()
			}
		})
	}
	var stuckMu sync.Mutex
	for _, act := range a.actors {
		execute, interrupt := bound(act, clock, a.cfg.ShutdownTimeout, hard.Done(), func(err error) {
			a.log.Error("actor did not stop; abandoned", "actor", act.name, "err", err)
			stuckMu.Lock()
			cleanups = append(cleanups, err)
			stuckMu.Unlock()
		})
		g.Add(act.name, execute, interrupt)
	}

	runErr := g.Run()
	if f, ok := a.opts.tracerProvider.(interface{ ForceFlush(context.Context) error }); ok && f != nil {
		fctx, cancel := context.WithDeadline(hard, earlier(time.Now().Add(5*time.Second), clock.deadline().Add(stopMargin)))
		if err := f.ForceFlush(fctx); err != nil {
			cleanups = append(cleanups, fmt.Errorf("flush traces: %w", err))
		}
		cancel()
	}
	if errors.Is(runErr, lifecycle.ErrSignal) || errors.Is(runErr, context.Canceled) && ctx.Err() != nil {
		a.log.Info("stopped", "cause", runErr)
		runErr = nil
	}
	return errors.Join(append([]error{runErr}, cleanups...)...)
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

// Add adds an actor whose interrupt first starts the stop's clock.
func (g *group) Add(name string, execute func() error, interrupt func(error)) {
	g.Group.Add(name, execute, func(err error) {
		g.clock.deadline()
		interrupt(err)
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

// newRegistrar builds the registrar of this instance.
func (a *App) newRegistrar(cli *clientv3.Client, addr string) (Registrar, error) {
	md := a.opts.metadata
	md.InstanceID = rand.Text()
	md.Version = a.opts.version
	md.StartTime = time.Now().UTC().Truncate(time.Second)
	for name := range a.grpc.GetServiceInfo() {
		if name != healthpb.Health_ServiceDesc.ServiceName && !strings.HasPrefix(name, "grpc.reflection.") {
			md.Services = append(md.Services, name)
		}
	}
	slices.Sort(md.Services)
	inst := naming.Instance{Service: a.name, Addr: addr, Metadata: md}
	if a.opts.registrar != nil {
		return a.opts.registrar(inst)
	}
	r, err := naming.NewRegistrar(cli, inst,
		naming.WithPrefix(a.cfg.Prefix),
		naming.WithTTL(a.cfg.TTL),
		naming.WithLogger(a.log),
		naming.WithStopTimeout(a.cfg.ShutdownTimeout))
	if err != nil {
		return nil, fmt.Errorf("framework: %w", err)
	}
	return etcdRegistrar{r}, nil
}

func sinceSeconds(t time.Time) float64 { return time.Since(t).Seconds() }
