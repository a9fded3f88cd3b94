package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/etcdtest"
)

// ---------------------------------------------------------------------------
// framework.App helpers.

// appConfig is the configuration of every App of these benchmarks: etcd at
// endpoints, a TTL of 10s, the rest default (gRPC on 127.0.0.1:0, no admin).
func appConfig(endpoints []string) framework.Config {
	cfg := framework.DefaultConfig()
	cfg.Etcd = endpoints
	cfg.TTL = 10 * time.Second
	return cfg
}

// appOptions returns the options of an App run by a benchmark: cfg, no
// signal handling (the context stops it), a quiet logger, then extra.
func appOptions(cfg framework.Config, extra ...framework.Option) []framework.Option {
	return append([]framework.Option{
		framework.WithConfig(cfg),
		framework.WithoutSignals(),
		framework.WithLogger(quiet),
	}, extra...)
}

// benchApp is an App and the context its Run is given.
type benchApp struct {
	app     *framework.App
	ctx     context.Context
	cancel  context.CancelFunc
	running bool
	done    chan struct{} // closed when Run has returned
	err     error         // what Run returned, once done is closed
}

// newBenchApp builds an App (New touches neither network nor etcd) and its
// context. At cleanup the context is cancelled and Run, if started, waited
// for.
func newBenchApp(b *testing.B, name string, opts []framework.Option) *benchApp {
	b.Helper()
	app, err := framework.New(name, opts...)
	if err != nil {
		b.Fatalf("framework.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &benchApp{app: app, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	b.Cleanup(func() {
		cancel()
		if !a.running {
			return
		}
		select {
		case <-a.done:
		case <-time.After(waitTimeout):
			b.Errorf("%s: Run did not return within %s of cleanup", name, waitTimeout)
		}
	})
	return a
}

// start runs the App in a new goroutine.
func (a *benchApp) start() {
	a.running = true
	go func() { defer close(a.done); a.err = a.app.Run(a.ctx) }()
}

// checkStarted fails b unless the App has started (Started is closed);
// timedOut says that the wait for Started timed out.
func (a *benchApp) checkStarted(b *testing.B, i int, timedOut bool) {
	b.Helper()
	select {
	case <-a.app.Started():
		return
	default:
	}
	select {
	case <-a.done:
		b.Fatalf("iteration %d: Run returned before Started: %v", i, a.err)
	default:
	}
	if timedOut {
		b.Fatalf("iteration %d: not started within %s", i, waitTimeout)
	}
	b.Fatalf("iteration %d: not started", i)
}

// checkStopped fails b unless Run has returned nil (timedOut false).
func (a *benchApp) checkStopped(b *testing.B, i int, timedOut bool) {
	b.Helper()
	if timedOut {
		b.Fatalf("iteration %d: Run did not return within %s of cancel", i, waitTimeout)
	}
	if a.err != nil {
		b.Fatalf("iteration %d: Run: %v", i, a.err)
	}
}

// stop cancels the context and waits, untimed, for Run to return nil.
func (a *benchApp) stop(b *testing.B, i int) {
	b.Helper()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	a.cancel()
	timedOut := false
	select {
	case <-a.done:
	case <-timeout.C:
		timedOut = true
	}
	a.checkStopped(b, i, timedOut)
}

// ---------------------------------------------------------------------------
// BenchmarkAppStart

// BenchmarkAppStart measures how long framework.App.Run takes from its call
// until Started: listening, serving and registered in etcd.
func BenchmarkAppStart(b *testing.B) {
	b.Run("shared-client", func(b *testing.B) {
		cli := startEtcd(b)
		benchAppStart(b, appConfig(cli.Endpoints()), framework.WithEtcd(cli))
	})
	b.Run("own-client", func(b *testing.B) {
		// Run creates (and at its end closes) an etcd client from cfg.
		c := etcdtest.Start(b)
		benchAppStart(b, appConfig(c.Endpoints()))
	})
}

func benchAppStart(b *testing.B, cfg framework.Config, extra ...framework.Option) {
	b.Helper()
	opts := appOptions(cfg, append([]framework.Option{framework.WithPropagationDelay(0)}, extra...)...)
	durs := make([]time.Duration, 0, b.N)
	b.StopTimer()
	b.ResetTimer()
	for i := range b.N {
		a := newBenchApp(b, "bstart", opts)
		timeout := time.NewTimer(waitTimeout)

		b.StartTimer()
		start := time.Now()
		a.start()
		timedOut := false
		select {
		case <-a.app.Started():
		case <-a.done:
		case <-timeout.C:
			timedOut = true
		}
		d := time.Since(start)
		b.StopTimer()

		timeout.Stop()
		a.checkStarted(b, i, timedOut)
		a.stop(b, i)
		durs = append(durs, d)
	}
	reportQuantiles(b, durs)
}

// ---------------------------------------------------------------------------
// BenchmarkAppStop

// BenchmarkAppStop measures the ordered stop of an idle App: from the
// cancellation of Run's context (which feeds the same ordered shutdown as
// the App's signal actor) until Run returns, in process; and from SIGTERM
// until exit for the test server as a child process.
func BenchmarkAppStop(b *testing.B) {
	b.Run("delay=0", func(b *testing.B) {
		cli := startEtcd(b)
		benchAppStop(b, appOptions(appConfig(cli.Endpoints()),
			framework.WithEtcd(cli), framework.WithPropagationDelay(0)))
	})
	b.Run("delay=default", func(b *testing.B) {
		cli := startEtcd(b)
		benchAppStop(b, appOptions(appConfig(cli.Endpoints()), framework.WithEtcd(cli)))
	})
	// The binary is built once, and only if the sub-benchmark runs.
	var (
		buildOnce sync.Once
		bin       string
		buildErr  error
	)
	dir := b.TempDir()
	b.Run("sigterm-process", func(b *testing.B) {
		buildOnce.Do(func() { bin, buildErr = buildTestServer(dir) })
		if buildErr != nil {
			b.Fatal(buildErr)
		}
		c := etcdtest.Start(b)
		benchProcessStop(b, bin, c.Endpoint(0))
	})
}

func benchAppStop(b *testing.B, opts []framework.Option) {
	b.Helper()
	durs := make([]time.Duration, 0, b.N)
	b.StopTimer()
	b.ResetTimer()
	for i := range b.N {
		a := newBenchApp(b, "bstop", opts)
		a.start()
		startTimeout := time.NewTimer(waitTimeout)
		select {
		case <-a.app.Started():
		case <-a.done:
		case <-startTimeout.C:
		}
		startTimeout.Stop()
		a.checkStarted(b, i, true)
		timeout := time.NewTimer(waitTimeout)

		b.StartTimer()
		start := time.Now()
		a.cancel()
		timedOut := false
		select {
		case <-a.done:
		case <-timeout.C:
			timedOut = true
		}
		d := time.Since(start)
		b.StopTimer()

		timeout.Stop()
		a.checkStopped(b, i, timedOut)
		durs = append(durs, d)
	}
	reportQuantiles(b, durs)
}

// buildTestServer builds framework/testdata/testserver into dir and returns
// the binary's path.
func buildTestServer(dir string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(dir, "testserver")
	cmd := exec.Command("go", "build", "-o", bin, "./framework/testdata/testserver")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build testserver in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}

// servingLine is what the App logs once it serves and is registered.
const servingLine = "msg=serving"

// watchedOutput collects a process's output and notes when servingLine first
// appears in it.
type watchedOutput struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	serving chan struct{}
	at      time.Time
}

func (w *watchedOutput) Write(p []byte) (int, error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.at.IsZero() && bytes.Contains(w.buf.Bytes(), []byte(servingLine)) {
		w.at = now
		close(w.serving)
	}
	return len(p), nil
}

func (w *watchedOutput) servingAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.at
}

func (w *watchedOutput) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// childServer is the test server running as a child process.
type childServer struct {
	cmd    *exec.Cmd
	out    *watchedOutput
	exited chan struct{} // closed when Wait has returned
	err    error         // what Wait returned, once exited is closed
}

// newChildServer prepares the test server at bin against etcd at endpoint;
// at cleanup it is killed if it still runs.
func newChildServer(b *testing.B, bin, endpoint string) *childServer {
	b.Helper()
	cmd := exec.Command(bin, "--etcd", endpoint)
	cmd.Env = append(os.Environ(), "TESTSERVER_PROPAGATION_DELAY=1ms")
	out := &watchedOutput{serving: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	p := &childServer{cmd: cmd, out: out, exited: make(chan struct{})}
	b.Cleanup(func() {
		if cmd.Process == nil {
			return
		}
		select {
		case <-p.exited:
			return
		default:
		}
		_ = cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(waitTimeout):
			b.Errorf("test server pid %d not reaped within %s of SIGKILL", cmd.Process.Pid, waitTimeout)
		}
	})
	return p
}

func (p *childServer) start() error {
	if err := p.cmd.Start(); err != nil {
		return err
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	return nil
}

func benchProcessStop(b *testing.B, bin, endpoint string) {
	b.Helper()
	durs := make([]time.Duration, 0, b.N)
	starts := make([]time.Duration, 0, b.N)
	b.StopTimer()
	b.ResetTimer()
	for i := range b.N {
		p := newChildServer(b, bin, endpoint)
		begin := time.Now()
		if err := p.start(); err != nil {
			b.Fatalf("iteration %d: start test server: %v", i, err)
		}
		startTimeout := time.NewTimer(waitTimeout)
		select {
		case <-p.out.serving:
		case <-p.exited:
			b.Fatalf("iteration %d: test server exited before serving: %v\n%s", i, p.err, p.out)
		case <-startTimeout.C:
			b.Fatalf("iteration %d: test server not serving within %s:\n%s", i, waitTimeout, p.out)
		}
		startTimeout.Stop()
		starts = append(starts, p.out.servingAt().Sub(begin))
		timeout := time.NewTimer(waitTimeout)

		b.StartTimer()
		start := time.Now()
		err := p.cmd.Process.Signal(syscall.SIGTERM)
		timedOut := false
		if err == nil {
			select {
			case <-p.exited:
			case <-timeout.C:
				timedOut = true
			}
		}
		d := time.Since(start)
		b.StopTimer()

		timeout.Stop()
		switch {
		case err != nil:
			b.Fatalf("iteration %d: SIGTERM: %v", i, err)
		case timedOut:
			b.Fatalf("iteration %d: test server did not exit within %s of SIGTERM:\n%s", i, waitTimeout, p.out)
		case p.err != nil:
			b.Fatalf("iteration %d: test server: %v\n%s", i, p.err, p.out)
		}
		durs = append(durs, d)
	}
	reportQuantiles(b, durs)
	b.ReportMetric(msQuantile(starts, 0.5), "ms-start-median")
	b.ReportMetric(msQuantile(starts, 0.9), "ms-start-p90")
}
