package framework

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
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
	"google.golang.org/grpc/reflection"

	"github.com/svckit/svckit/framework/lifecycle"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/overload"
	"github.com/svckit/svckit/framework/serve"
)

// App is a gRPC service that registers itself in etcd while it serves.
type App struct {
	name       string
	opts       options
	log        *slog.Logger
	grpc       *grpc.Server
	health     *health.Server
	metrics    *prometheus.Registry
	srvMetrics *grpcprom.ServerMetrics
	limiter    *overload.Limiter // nil with --overload-cpu 0

	actors []actor

	mu       sync.Mutex
	reg      Registrar
	addr     string
	admin    string
	started  chan struct{}
	ran      bool
	stopping atomic.Bool
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
	if err := o.resolve(); err != nil {
		return nil, err
	}
	a := &App{
		name:       name,
		opts:       o,
		log:        o.logger.With("service", name),
		health:     health.NewServer(),
		metrics:    prometheus.NewRegistry(),
		srvMetrics: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram()),
		started:    make(chan struct{}),
	}
	var err error
	if a.limiter, err = o.newLimiter(); err != nil {
		return nil, err
	}
	var load *loadReporter
	if o.orca {
		load = newLoadReporter(a.limiter)
	}
	var sopts []grpc.ServerOption
	if sopts, err = a.serverOptions(load); err != nil {
		return nil, err
	}
	if a.grpc, err = a.newGRPCServer(sopts); err != nil {
		return nil, err
	}
	if a.limiter != nil {
		a.runLimiter(a.limiter)
		a.metrics.MustRegister(newOverloadCollector(a.limiter))
	}
	if load != nil {
		if err := a.serveORCA(load); err != nil {
			return nil, err
		}
	}
	healthpb.RegisterHealthServer(a.grpc, a.health)
	reflection.Register(a.grpc)
	a.metrics.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		a.srvMetrics,
		newRegistrarCollector(a),
	)
	return a, nil
}

// newGRPCServer is grpc.NewServer with its panic on bad options, such as
// a second grpc.InTapHandle (it takes one, and load shedding sets one),
// turned into an error.
func (a *App) newGRPCServer(sopts []grpc.ServerOption) (s *grpc.Server, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("framework: gRPC server options: %v", r)
			if a.limiter != nil {
				err = fmt.Errorf("%w (load shedding sets the server's grpc.InTapHandle; to set your own, turn it off with --overload-cpu 0)", err)
			}
		}
	}()
	return grpc.NewServer(sopts...), nil
}

// serverOptions returns the options of the gRPC server, later ones winning:
// the interceptor chain, the limits, the keepalive policy, load shedding's
// tap, TLS, the user's (WithServerOption), then ORCA's (load is nil
// without WithORCA).
func (a *App) serverOptions(load *loadReporter) ([]grpc.ServerOption, error) {
	unary, stream := a.interceptors(load)
	sopts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)}
	sopts = append(append(sopts, a.opts.limits.ServerOptions()...), serve.Keepalive()...)
	if a.limiter != nil {
		sopts = append(sopts, grpc.InTapHandle(a.limiter.Tap))
	}
	if cfg := a.opts.config; cfg.TLSCert != "" {
		creds, err := ServerTLS(cfg.TLSCert, cfg.TLSKey, cfg.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("framework: %w", err)
		}
		sopts = append(sopts, grpc.Creds(creds))
	}
	sopts = append(sopts, a.opts.serverOptions...)
	if load != nil {
		sopts = append(sopts, load.serverOptions()...)
	}
	return sopts, nil
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
	if rs, ok := reg.(RegistrarStatus); ok {
		st := rs.Status()
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
	ran := a.ran
	a.ran = true
	a.mu.Unlock()
	if ran {
		return errors.New("framework: Run called twice")
	}
	r, err := a.start()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, r.close()) }()

	// The actors stop in the order added: the shutdown list of the package
	// doc.
	g := group{clock: r.clock}
	if a.opts.signals {
		g.add(a.signalsActor(r))
	}
	g.add(contextActor(ctx))
	g.add(a.readinessActor())
	g.add(a.registrarActor(ctx, r))
	g.add(a.grpcActor(r))
	if r.adminLis != nil {
		g.add(a.adminActor(r))
	}
	for _, act := range a.actors {
		g.add(a.userActor(r, act))
	}

	runErr := g.Run()
	a.flushTraces(r)
	if errors.Is(runErr, lifecycle.ErrSignal) || errors.Is(runErr, context.Canceled) && ctx.Err() != nil {
		a.log.Info("stopped", "cause", runErr)
		runErr = nil
	}
	return errors.Join(append([]error{runErr}, r.failures()...)...)
}

// newRegistrar builds the registrar of this instance.
func (a *App) newRegistrar(cli *clientv3.Client, addr string) (Registrar, error) {
	md := a.opts.metadata
	md.InstanceID = rand.Text()
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
		naming.WithPrefix(a.opts.config.Prefix),
		naming.WithTTL(a.opts.config.TTL),
		naming.WithLogger(a.log),
		naming.WithStopTimeout(a.opts.config.ShutdownTimeout))
	if err != nil {
		return nil, fmt.Errorf("framework: %w", err)
	}
	return etcdRegistrar{r}, nil
}

func sinceSeconds(t time.Time) float64 { return time.Since(t).Seconds() }
