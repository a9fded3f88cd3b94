package framework_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/lifecycle"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/serve"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

// probeRegistrar wraps the etcd registrar and, at the moment the App
// deregisters, records what a client would see: readiness, health, and
// whether the listener still accepts.
type probeRegistrar struct {
	*naming.Registrar
	app     **framework.App
	atStop  chan probe
	checkCC func() (healthpb.HealthCheckResponse_ServingStatus, error)
}

type probe struct {
	ready       bool
	readyz      int
	health      healthpb.HealthCheckResponse_ServingStatus
	healthErr   error
	listenerErr error
}

func (p *probeRegistrar) Registered() bool {
	return p.Status().State == naming.StateRegistered
}

func (p *probeRegistrar) Deregister(ctx context.Context) error {
	a := *p.app
	var pr probe
	pr.ready = a.Ready()
	if resp, err := http.Get("http://" + a.AdminAddr() + "/readyz"); err == nil {
		pr.readyz = resp.StatusCode
		_ = resp.Body.Close()
	}
	pr.health, pr.healthErr = p.checkCC()
	conn, err := net.DialTimeout("tcp", a.Addr(), time.Second)
	pr.listenerErr = err
	if err == nil {
		_ = conn.Close()
	}
	p.atStop <- pr
	return p.Registrar.Deregister(ctx)
}

func TestShutdownOrderInProcess(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	cfg := framework.DefaultConfig()
	cfg.Etcd = c.Endpoints()
	cfg.Admin = "127.0.0.1:0"
	var app *framework.App
	var cc *grpc.ClientConn
	pr := &probeRegistrar{app: &app, atStop: make(chan probe, 1)}
	pr.checkCC = func() (healthpb.HealthCheckResponse_ServingStatus, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return resp.GetStatus(), err
	}
	app, err := framework.New("order",
		framework.WithConfig(cfg),
		framework.WithoutSignals(),
		framework.WithPropagationDelay(0),
		framework.WithRegistrar(func(inst naming.Instance) (framework.Registrar, error) {
			r, err := naming.NewRegistrar(cli, inst)
			pr.Registrar = r
			return pr, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	select {
	case <-app.Started():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not started within 20s")
	}
	if !app.Ready() {
		t.Fatal("not ready after Started")
	}
	cc, err = grpc.NewClient("passthrough:///"+app.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if st, err := pr.checkCC(); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health while serving: %v %v", st, err)
	}

	cancel()
	have := <-pr.atStop
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: have %v, want nil", err)
	}
	if have.ready || have.readyz != http.StatusServiceUnavailable {
		t.Errorf("at deregistration: ready %t, /readyz %d; want false, 503", have.ready, have.readyz)
	}
	if have.healthErr != nil || have.health != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("at deregistration: health %v, %v; want NOT_SERVING from a live server", have.health, have.healthErr)
	}
	if have.listenerErr != nil {
		t.Errorf("at deregistration: listener closed already: %v", have.listenerErr)
	}
	if n := etcdtest.Count(t, cli, "services/order/"); n != 0 {
		t.Errorf("after Run: %d records left", n)
	}
}

func TestRunReturnsActorErrorAndCleansUp(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	cfg := framework.DefaultConfig()
	cfg.Etcd = c.Endpoints()
	app, err := framework.New("failing", framework.WithConfig(cfg), framework.WithoutSignals(), framework.WithPropagationDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("queue broken")
	app.Add("queue", func() error {
		<-app.Started()
		return boom
	}, func(error) {})
	err = app.Run(context.Background())
	if !errors.Is(err, boom) || err.Error() != "queue: queue broken" {
		t.Fatalf("Run: have %v, want queue: queue broken", err)
	}
	if n := etcdtest.Count(t, cli, "services/failing/"); n != 0 {
		t.Fatalf("%d records left after a failed Run", n)
	}
	if err := app.Run(context.Background()); err == nil {
		t.Fatal("second Run: have nil error")
	}
}

func TestNewRefusesInvalidInput(t *testing.T) {
	bad := framework.DefaultConfig()
	bad.TTL = 0
	for name, f := range map[string]func() error{
		"bad name":   func() error { _, err := framework.New("a/b"); return err },
		"bad config": func() error { _, err := framework.New("svc", framework.WithConfig(bad)); return err },
		"nil logger": func() error { _, err := framework.New("svc", framework.WithLogger(nil)); return err },
		"neg. delay": func() error { _, err := framework.New("svc", framework.WithPropagationDelay(-1)); return err },
		"zero streams": func() error {
			l := serve.DefaultLimits()
			l.MaxConcurrentStreams = 0
			_, err := framework.New("svc", framework.WithLimits(l))
			return err
		},
		"zero recv": func() error {
			_, err := framework.New("svc", framework.WithLimits(serve.Limits{MaxSendMsgSize: 1, MaxConcurrentStreams: 1}))
			return err
		},
	} {
		if err := f(); err == nil {
			t.Errorf("%s: have nil error", name)
		}
	}
}

// An actor whose interrupt never returns is abandoned after the shutdown
// timeout: the actors after it still stop, and Run returns an error naming
// it instead of hanging.
func TestStuckActorIsAbandonedAfterShutdownTimeout(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	cfg := framework.DefaultConfig()
	cfg.Etcd = c.Endpoints()
	cfg.ShutdownTimeout = 500 * time.Millisecond
	app, err := framework.New("stuck", framework.WithConfig(cfg), framework.WithoutSignals(), framework.WithPropagationDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{}) // ends the stuck actor's goroutines after the test, for goleak
	t.Cleanup(func() { close(release) })
	app.Add("stuck", func() error { <-release; return nil }, func(error) { <-release })
	after := make(chan struct{})
	app.Add("after", func() error { <-after; return nil }, func(error) { close(after) })

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	select {
	case <-app.Started():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not started within 20s")
	}
	start := time.Now()
	cancel()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run still running 20s after cancel: the stuck actor is not bounded")
	}
	took := time.Since(start)
	var ae *lifecycle.ActorError
	if !errors.As(err, &ae) || ae.Actor != "stuck" {
		t.Fatalf("Run: have %v, want an *lifecycle.ActorError naming stuck", err)
	}
	if have, want := err.Error(), "stuck: did not stop by the shutdown deadline (--shutdown-timeout 500ms)"; have != want {
		t.Fatalf("Run: have %q, want %q", have, want)
	}
	select {
	case <-after:
	default:
		t.Error("the actor after the stuck one was never interrupted")
	}
	if took < cfg.ShutdownTimeout || took > cfg.ShutdownTimeout+5*time.Second {
		t.Errorf("Run returned %s after cancel, want about the 500ms shutdown timeout", took)
	}
	if n := etcdtest.Count(t, cli, "services/stuck/"); n != 0 {
		t.Errorf("%d records left", n)
	}
	t.Logf("Run returned %s after cancel with a stuck actor (shutdown timeout 500ms)", took.Round(time.Millisecond))
}

// The whole stop has one deadline, --shutdown-timeout after it begins
// plus the propagation delay: a drain held up by a call that never ends
// and two stuck actors share it, rather than taking a timeout each, and
// Run returns within the documented bound, that deadline plus 1 s.
func TestShutdownTimeoutBoundsTheWholeStop(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	cfg := framework.DefaultConfig()
	cfg.Etcd = c.Endpoints()
	cfg.ShutdownTimeout = 2 * time.Second
	const delay = 300 * time.Millisecond
	inCall := make(chan struct{}, 1)
	app, err := framework.New("bounded", framework.WithConfig(cfg), framework.WithoutSignals(),
		framework.WithPropagationDelay(delay),
		framework.WithUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			inCall <- struct{}{}
			return h(ctx, req)
		}))
	if err != nil {
		t.Fatal(err)
	}
	testsvc.Register(app.GRPC())
	release := make(chan struct{}) // ends the stuck actors' goroutines after the test, for goleak
	t.Cleanup(func() { close(release) })
	for _, name := range []string{"stuck1", "stuck2"} {
		app.Add(name, func() error { <-release; return nil }, func(error) { <-release })
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	select {
	case <-app.Started():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not started within 20s")
	}
	cc, err := grpc.NewClient(app.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	call := make(chan error, 1)
	go func() { call <- testsvc.Sleep(context.Background(), cc, time.Minute) }()
	select {
	case <-inCall:
	case err := <-call:
		t.Fatalf("call ended before the stop: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("call not in the server within 10s")
	}

	start := time.Now()
	cancel()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run still running 30s after cancel")
	}
	took := time.Since(start)
	t.Logf("Run returned %s after cancel (shutdown timeout 2s, propagation delay 300ms, a call that never ends, two stuck actors): %v",
		took.Round(time.Millisecond), err)
	var ae *lifecycle.ActorError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "stuck1: ") || !strings.Contains(err.Error(), "stuck2: ") {
		t.Errorf("Run: have %v, want an *lifecycle.ActorError for each stuck actor", err)
	}
	if bound := cfg.ShutdownTimeout + delay + time.Second; took < cfg.ShutdownTimeout || took > bound {
		t.Errorf("Run returned %s after cancel, want between the shutdown timeout %s and %s", took, cfg.ShutdownTimeout, bound)
	}
	if err := <-call; err == nil {
		t.Error("the call that never ends: have nil error, want it cut by the stop")
	}
	if n := etcdtest.Count(t, cli, "services/bounded/"); n != 0 {
		t.Errorf("%d records left", n)
	}
}

// getReadyz returns the status and body of the App's /readyz.
func getReadyz(t *testing.T, app *framework.App) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + app.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("/readyz body: %v", err)
	}
	return resp.StatusCode, string(b)
}

// runUntilStarted runs app until ctx ends and returns the channel of Run's
// error once app has started, failing t if Run returns first or app has not
// started within 20s.
func runUntilStarted(ctx context.Context, t *testing.T, app *framework.App) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	select {
	case <-app.Started():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not started within 20s")
	}
	return done
}

// etcd away for longer than the TTL: the registration is lost on every
// instance at once, but each can still serve, so readiness holds (unless
// the option asks for the old behaviour), and /readyz says what was lost.
// A stop still makes it fail first.
func TestReadinessOutlivesEtcdOutage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      []framework.Option
		wantCode  int
		wantLines string
	}{
		{"default", nil, http.StatusOK, "ready\nregistration lost"},
		{"WithReadinessRequiresRegistration", []framework.Option{framework.WithReadinessRequiresRegistration()},
			http.StatusServiceUnavailable, "not ready\nregistration lost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := etcdtest.Start(t)
			cli := c.Client(t)
			cfg := framework.DefaultConfig()
			cfg.Etcd = c.Endpoints()
			cfg.Admin = "127.0.0.1:0"
			cfg.TTL = 2 * time.Second
			cfg.ShutdownTimeout = 5 * time.Second
			app, err := framework.New("outage", append([]framework.Option{framework.WithConfig(cfg),
				framework.WithoutSignals(), framework.WithPropagationDelay(2 * time.Second)}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := runUntilStarted(ctx, t, app)
			if code, body := getReadyz(t, app); code != http.StatusOK || body != "ready\nregistration registered\n" {
				t.Fatalf("/readyz while registered: %d %q", code, body)
			}

			loseRegistration(t, c, app, cfg.TTL, tc.wantCode, tc.wantLines)
			regainRegistration(t, c, cli, app)
			drainOutageApp(t, app, cancel, done, cli)
		})
	}
}

// loseRegistration stops etcd and watches app's /readyz until etcd has been
// away for twice ttl: it must say 200 until the registration is lost, then
// wantCode with a body that starts with wantLines.
func loseRegistration(t *testing.T, c *etcdtest.Cluster, app *framework.App, ttl time.Duration, wantCode int, wantLines string) {
	t.Helper()
	c.Stop(0)
	stopped := time.Now()
	var code int
	var body string
	var lostAfter time.Duration
	// Watch /readyz until etcd has been away for twice the TTL.
	poll.Until(t, 30*time.Second, "etcd away for 2×TTL", func() bool {
		code, body = getReadyz(t, app)
		lost := strings.Contains(body, "registration lost")
		if lost && lostAfter == 0 {
			lostAfter = time.Since(stopped)
		}
		if want := http.StatusOK; !lost && code != want {
			t.Fatalf("/readyz %s after etcd stopped, registration not lost yet: have %d %q, want %d",
				time.Since(stopped).Round(time.Millisecond), code, body, want)
		}
		if lost && (code != wantCode || !strings.HasPrefix(body, wantLines) || app.Ready() != (wantCode == http.StatusOK)) {
			t.Fatalf("/readyz %s after etcd stopped (TTL 2s): have %d %q, ready %t; want %d %q…",
				time.Since(stopped).Round(time.Millisecond), code, body, app.Ready(), wantCode, wantLines)
		}
		return lost && time.Since(stopped) > 2*ttl
	})
	t.Logf("etcd stopped: registration lost after %s (TTL 2s); /readyz %d %q after %s",
		lostAfter.Round(time.Millisecond), code, body, time.Since(stopped).Round(time.Millisecond))
}

// regainRegistration restarts etcd and waits until app is registered
// again, with one record.
func regainRegistration(t *testing.T, c *etcdtest.Cluster, cli *clientv3.Client, app *framework.App) {
	t.Helper()
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "registered again", func() bool {
		code, body := getReadyz(t, app)
		return code == http.StatusOK && body == "ready\nregistration registered\n"
	})
	if n := etcdtest.Count(t, cli, "services/outage/"); n != 1 {
		t.Fatalf("records after etcd came back: have %d, want 1", n)
	}
}

// drainOutageApp stops app with cancel and checks the drain: readiness
// fails while the App still serves through its 2s propagation delay, then
// Run returns nil and no record is left.
func drainOutageApp(t *testing.T, app *framework.App, cancel context.CancelFunc, done <-chan error, cli *clientv3.Client) {
	t.Helper()
	cancel()
	var body string
	poll.Until(t, 2*time.Second, "/readyz 503 during the drain", func() bool {
		var code int
		code, body = getReadyz(t, app)
		return code == http.StatusServiceUnavailable
	})
	if body != "not ready\nstopping\n" {
		t.Errorf("/readyz body during the drain: %q", body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := etcdtest.Count(t, cli, "services/outage/"); n != 0 {
		t.Fatalf("records after Run: have %d, want 0", n)
	}
}

// etcd unreachable at the stop: the revoke blocks, but only for its share
// of --shutdown-timeout (a third, at most 2 s), so the gRPC drain starts
// early enough to be one (the listener closes and in-flight calls finish),
// an actor added with Add gets the rest of the budget rather than the
// 100 ms grace, and Run still returns within the documented bound.
func TestUnreachableEtcdLeavesTheDrainItsTime(t *testing.T) {
	c := etcdtest.Start(t)
	cfg := framework.DefaultConfig()
	cfg.Etcd = c.Endpoints()
	cfg.ShutdownTimeout = 3 * time.Second
	const delay = 300 * time.Millisecond
	app, inCall := newDrainApp(t, cfg, delay)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runUntilStarted(ctx, t, app)
	addr := app.Addr()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	c.Stop(0)
	call := callInServer(t, cc, inCall)

	start := time.Now()
	cancel()
	drainAfter := waitListenerClosed(t, addr, start)
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run still running 30s after cancel")
	}
	took := time.Since(start)
	t.Logf("etcd down: drain began %s after cancel, Run returned after %s (shutdown timeout 3s, propagation delay 300ms): %v",
		drainAfter.Round(time.Millisecond), took.Round(time.Millisecond), err)
	if err := <-call; err != nil {
		t.Errorf("the 1s call in flight at the stop: %v", err)
	}
	if want := time.Second + delay + 500*time.Millisecond; drainAfter > want {
		t.Errorf("drain began %s after cancel, want by %s (deregistration's share 1s + propagation delay + 500ms)", drainAfter, want)
	}
	if err == nil || !strings.Contains(err.Error(), "deregister: ") {
		t.Errorf("Run: have %v, want the failed deregistration", err)
	}
	if strings.Contains(fmt.Sprint(err), "closer") {
		t.Errorf("Run: have %v, want the closer actor not reported stuck (it had the rest of the budget)", err)
	}
	if bound := cfg.ShutdownTimeout + delay + time.Second; took > bound {
		t.Errorf("Run returned %s after cancel, want within %s", took, bound)
	}
}

// newDrainApp returns an App "drain" of cfg serving the test service, whose
// every call sends on inCall once in the server, and with an actor "closer"
// that needs 500 ms to stop.
func newDrainApp(t *testing.T, cfg framework.Config, delay time.Duration) (app *framework.App, inCall <-chan struct{}) {
	t.Helper()
	in := make(chan struct{}, 1)
	app, err := framework.New("drain", framework.WithConfig(cfg), framework.WithoutSignals(),
		framework.WithPropagationDelay(delay),
		framework.WithUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			in <- struct{}{}
			return h(ctx, req)
		}))
	if err != nil {
		t.Fatal(err)
	}
	testsvc.Register(app.GRPC())
	// closer needs 500 ms to stop, well inside the budget left after the
	// drain, but more than the grace of an actor interrupted at the deadline.
	quit := make(chan struct{})
	app.Add("closer", func() error { <-quit; return nil }, func(error) {
		t := time.NewTimer(500 * time.Millisecond)
		defer t.Stop()
		<-t.C
		close(quit)
	})
	return app, in
}

// callInServer starts a 1s call on cc and returns the channel of its error
// once the call is in the server (inCall), failing t if it ends first or is
// not in within 10s.
func callInServer(t *testing.T, cc *grpc.ClientConn, inCall <-chan struct{}) <-chan error {
	t.Helper()
	call := make(chan error, 1)
	go func() { call <- testsvc.Sleep(context.Background(), cc, time.Second) }()
	select {
	case <-inCall:
	case err := <-call:
		t.Fatalf("call ended before the stop: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("call not in the server within 10s")
	}
	return call
}

// waitListenerClosed returns how long after start the listener on addr
// refused connections: when the drain begins, after the deregistration's
// share (1 s) and the propagation delay, not at the deadline (3.3 s).
func waitListenerClosed(t *testing.T, addr string, start time.Time) time.Duration {
	t.Helper()
	var drainAfter time.Duration
	poll.Until(t, 10*time.Second, "listener closed", func() bool {
		conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			_ = conn.Close()
			return false
		}
		drainAfter = time.Since(start)
		return true
	})
	return drainAfter
}

// staticRegistrar is a Registrar of the user's, not etcd's: published from
// Register to Deregister.
type staticRegistrar struct {
	registered atomic.Bool
	done       chan struct{}
}

func (r *staticRegistrar) Register(context.Context) error   { r.registered.Store(true); return nil }
func (r *staticRegistrar) Deregister(context.Context) error { r.registered.Store(false); return nil }
func (r *staticRegistrar) Registered() bool                 { return r.registered.Load() }
func (r *staticRegistrar) Done() <-chan struct{}            { return r.done }

// statusRegistrar also implements framework.RegistrarStatus.
type statusRegistrar struct{ staticRegistrar }

func (r *statusRegistrar) Status() naming.Status {
	return naming.Status{State: naming.StateRegistered, Registrations: 3, Losses: 2, LastKeepAlive: time.Now()}
}

// A registrar plugged in with WithRegistrar gets its metrics exported
// and its state on /readyz when it implements RegistrarStatus, and
// svckit_registered alone when it does not.
func TestCustomRegistrarMetrics(t *testing.T) {
	for _, tc := range []struct {
		name          string
		reg           framework.Registrar
		want, wantNot []string
		readyz        string
	}{{
		name:   "with status",
		reg:    &statusRegistrar{staticRegistrar{done: make(chan struct{})}},
		want:   []string{"svckit_registered 1", "svckit_registrations_total 3", "svckit_registration_losses_total 2", "svckit_keepalive_age_seconds "},
		readyz: "ready\nregistration registered\n",
	}, {
		name:    "without status",
		reg:     &staticRegistrar{done: make(chan struct{})},
		want:    []string{"svckit_registered 1"},
		wantNot: []string{"svckit_registrations_total", "svckit_registration_losses_total", "svckit_keepalive_age_seconds"},
		readyz:  "ready\nregistration registered\n",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := framework.DefaultConfig()
			cfg.Admin = "127.0.0.1:0"
			app, err := framework.New("custom", framework.WithConfig(cfg), framework.WithoutSignals(), framework.WithPropagationDelay(0),
				framework.WithLogger(slog.New(slog.DiscardHandler)),
				framework.WithRegistrar(func(naming.Instance) (framework.Registrar, error) { return tc.reg, nil }))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- app.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			select {
			case <-app.Started():
			case err := <-done:
				t.Fatalf("Run: %v", err)
			}
			metrics := httpBody(t, "http://"+app.AdminAddr()+"/metrics")
			for _, w := range tc.want {
				if !strings.Contains(metrics, "\n"+w) {
					t.Errorf("/metrics: want a line starting %q, have none", w)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(metrics, "\n"+w) {
					t.Errorf("/metrics: want no %s, have one", w)
				}
			}
			if have := httpBody(t, "http://"+app.AdminAddr()+"/readyz"); have != tc.readyz {
				t.Errorf("/readyz: have %q, want %q", have, tc.readyz)
			}
		})
	}
}

// httpBody returns the body of a GET of url.
func httpBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b)
}
