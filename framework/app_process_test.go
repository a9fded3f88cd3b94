package framework_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

const svcKey = "services/testsvc/"

func direct(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func httpGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestSIGTERMDeregistersThenDrainsAndExitsZero(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	// A long propagation delay separates "record gone" from "listener
	// closed" by far more than any scheduling noise.
	p := startProc(t, []string{"TESTSERVER_PROPAGATION_DELAY=2s"},
		"--etcd", c.Endpoint(0), "--ttl", "5s", "--admin", "127.0.0.1:0", "--shutdown-timeout", "10s")
	if n := etcdtest.Count(t, cli, svcKey+p.addr); n != 1 {
		t.Fatalf("record of %s: have %d keys, want 1", p.addr, n)
	}
	code, body, err := httpGet("http://" + p.admin + "/readyz")
	if err != nil || code != 200 {
		t.Fatalf("/readyz while serving: %d %q %v", code, body, err)
	}
	cc := direct(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A health watch is a stream like any other: GracefulStop waits for it,
	// so it gets its own context, ended once it has seen NOT_SERVING.
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	hs, err := healthpb.NewHealthClient(cc).Watch(hctx, &healthpb.HealthCheckRequest{Service: testsvc.ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := hs.Recv(); err != nil || st.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before stop: %v, %v", st, err)
	}

	wch := cli.Watch(ctx, svcKey+p.addr)
	inflight := make(chan error, 1)
	go func() { inflight <- testsvc.Sleep(ctx, cc, 1500*time.Millisecond) }()
	// Wait until the server has started the call.
	poll.Until(t, 10*time.Second, "call in flight", func() bool {
		_, m, err := httpGet("http://" + p.admin + "/metrics")
		return err == nil && strings.Contains(m, `grpc_server_started_total{grpc_method="Sleep",grpc_service="svckit.test.Test",grpc_type="unary"} 1`)
	})
	start := time.Now()
	p.signal(t, syscall.SIGTERM)

	if st, err := hs.Recv(); err != nil || st.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health after SIGTERM: %v, %v", st, err)
	}
	hcancel()
	code, _, _ = httpGet("http://" + p.admin + "/readyz")
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz after SIGTERM: have %d, want 503", code)
	}
	for wr := range wch {
		if len(wr.Events) > 0 && wr.Events[0].Type == clientv3.EventTypeDelete {
			break
		}
	}
	deleted := time.Since(start)
	// The record is gone; the listener must still accept.
	conn, err := net.DialTimeout("tcp", p.addr, time.Second)
	if err != nil {
		t.Fatalf("listener closed before the record was deleted: %v", err)
	}
	_ = conn.Close()
	if err := <-inflight; err != nil {
		t.Fatalf("in-flight call failed during shutdown: %v", err)
	}
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code: have %d, want 0", code)
	}
	t.Logf("SIGTERM → record deleted %s, exit %s (propagation delay 2s, in-flight call 1.5s)",
		deleted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

func TestSecondSIGTERMExitsAtOnce(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	p := startProc(t, []string{"TESTSERVER_PROPAGATION_DELAY=60s"},
		"--etcd", c.Endpoint(0), "--shutdown-timeout", "60s")
	p.signal(t, syscall.SIGTERM)
	poll.Until(t, 10*time.Second, "record deleted (drain started)", func() bool { return etcdtest.Count(t, cli, svcKey) == 0 })
	start := time.Now()
	p.signal(t, syscall.SIGTERM)
	p.wait(t, 10*time.Second) // the drain alone would take 60s
	t.Logf("second SIGTERM → exit in %s (drain was 60s)", time.Since(start).Round(time.Millisecond))
}

func TestStuckActorDoesNotKeepTheProcessAlive(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	p := startProc(t, []string{"TESTSERVER_STUCK_ACTOR=1"}, "--etcd", c.Endpoint(0), "--shutdown-timeout", "1s")
	start := time.Now()
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 1 {
		t.Fatalf("exit code: have %d, want 1", code)
	}
	if line, want := lastLine(p.Output()), "testserver: stuck: did not stop by the shutdown deadline (--shutdown-timeout 1s)"; line != want {
		t.Fatalf("last line: have %q, want %q", line, want)
	}
	t.Logf("SIGTERM → exit 1 in %s with a stuck actor (propagation delay 300ms, shutdown timeout 1s)", time.Since(start).Round(time.Millisecond))
}

func TestKill9LeavesRecordUntilTTL(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	p := startProc(t, nil, "--etcd", c.Endpoint(0), "--ttl", "2s")
	p.signal(t, syscall.SIGKILL)
	p.wait(t, 10*time.Second)
	if n := etcdtest.Count(t, cli, svcKey); n != 1 {
		t.Fatalf("right after kill -9: have %d records, want 1 until the TTL", n)
	}
	took := poll.Until(t, 15*time.Second, "record expired", func() bool { return etcdtest.Count(t, cli, svcKey) == 0 })
	t.Logf("kill -9 → record gone after %s (TTL 2s)", took.Round(time.Millisecond))
}

func TestHandlerPanicIsInternalAndServerKeepsServing(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	p := startProc(t, nil, "--etcd", c.Endpoint(0))
	cc := direct(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for name, call := range map[string]func() error{
		"unary":  func() error { return testsvc.Panic(ctx, cc) },
		"stream": func() error { return testsvc.PanicStream(ctx, cc) },
	} {
		err := call()
		st := status.Convert(err)
		if st.Code() != codes.Internal {
			t.Fatalf("%s panic: have %v, want Internal", name, err)
		}
		if strings.Contains(st.Message(), "panic") || strings.Contains(st.Message(), "/etc/shadow") || strings.Contains(st.Message(), ".go:") {
			t.Fatalf("%s panic leaks details to the client: %q", name, st.Message())
		}
	}
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("server not serving after panics: %v", err)
	}
	if err := testsvc.Sleep(ctx, cc, 0); err != nil {
		t.Fatalf("call after panics: %v", err)
	}
	if !strings.Contains(p.Output(), "handler panic") || !strings.Contains(p.Output(), "goroutine") {
		t.Errorf("server log lacks the panic and its stack:\n%s", p.Output())
	}
}

func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	p := startProc(t, nil, "--etcd", c.Endpoint(0), "--admin", "127.0.0.1:0")
	cc := direct(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := testsvc.Sleep(ctx, cc, 0); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][]string{
		"/healthz": {"ok"},
		"/readyz":  {"ready"},
		"/metrics": {
			`grpc_server_handled_total{grpc_code="OK",grpc_method="Sleep",grpc_service="svckit.test.Test",grpc_type="unary"} 1`,
			"svckit_registered 1", "svckit_registrations_total 1", "svckit_keepalive_age_seconds",
		},
		"/debug/pprof/": {"goroutine"},
	} {
		code, body, err := httpGet("http://" + p.admin + path)
		if err != nil || code != 200 {
			t.Errorf("%s: %d %v", path, code, err)
			continue
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s lacks %q", path, w)
			}
		}
	}
}

func TestRecordCarriesMetadata(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	p := startProc(t, nil, "--etcd", c.Endpoint(0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, svcKey+p.addr)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get record: %v", err)
	}
	rec, err := naming.DecodeRecord(resp.Kvs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	md := rec.Metadata
	if rec.Addr != p.addr || md.Version != "test" || md.InstanceID == "" || md.StartTime.IsZero() ||
		len(md.Services) != 1 || md.Services[0] != testsvc.ServiceName {
		t.Fatalf("record: %+v", rec)
	}
}

func TestBadConfigurationFailsWithOneLineAndRegistersNothing(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unparseable ttl", []string{"--etcd", c.Endpoint(0), "--ttl", "ten"}, "-ttl"},
		{"listen in use", []string{"--etcd", c.Endpoint(0), "--listen", busy.Addr().String()}, "--listen " + busy.Addr().String()},
		{"unreachable etcd", []string{"--etcd", "127.0.0.1:1"}, "127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := launch(t, []string{"TESTSERVER_REGISTER_TIMEOUT=1s"}, tc.args...)
			if code := p.wait(t, 30*time.Second); code == 0 {
				t.Fatalf("exit code 0 for %s", tc.name)
			}
			line := lastLine(p.Output())
			if !strings.HasPrefix(line, "testserver:") || !strings.Contains(line, tc.want) {
				t.Fatalf("last line %q does not name %q", line, tc.want)
			}
			if n := etcdtest.Count(t, cli, svcKey); n != 0 {
				t.Fatalf("%d records left", n)
			}
		})
	}
}

func TestRollingRestartUnderLoadFailsNoRPC(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	args := []string{"--etcd", c.Endpoint(0), "--ttl", "5s", "--shutdown-timeout", "10s"}
	var procs []*proc
	for range 3 {
		procs = append(procs, startProc(t, nil, args...))
	}
	b := naming.NewBuilder(cli)
	cc, err := grpc.NewClient("etcd:///services/testsvc", grpc.WithResolvers(b),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.Connect()
	poll.Until(t, 10*time.Second, "3 endpoints resolved", func() bool {
		st, ok := b.Status("services/testsvc")
		return ok && st.Endpoints == 3
	})

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	l := startLoad(4, 50_000, 5*time.Millisecond, func() error {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		return testsvc.Sleep(cctx, cc, time.Millisecond)
	})
	start := time.Now()
	for i, old := range procs {
		old.signal(t, syscall.SIGTERM)
		if code := old.wait(t, 20*time.Second); code != 0 {
			t.Fatalf("instance %d exit code %d", i, code)
		}
		nu := startProc(t, nil, args...)
		poll.Until(t, 10*time.Second, fmt.Sprintf("instance %d replaced", i), func() bool {
			return etcdtest.Count(t, cli, svcKey+nu.addr) == 1 && etcdtest.Count(t, cli, svcKey) == 3
		})
	}
	// Keep the load on a moment after the last restart.
	base := l.calls.Load()
	poll.Until(t, 10*time.Second, "calls after the restart", func() bool { return l.calls.Load() >= base+100 })
	l.stop()
	elapsed := time.Since(start)
	rate := float64(l.calls.Load()) / elapsed.Seconds()
	t.Logf("rolling restart of 3 instances: %d RPCs in %s (%.0f RPC/s), %d failed", l.calls.Load(), elapsed.Round(time.Millisecond), rate, l.failures.Load())
	if l.failures.Load() != 0 {
		t.Fatalf("failed RPCs: have %d, want 0; first: %v", l.failures.Load(), l.firstErr.Load())
	}
	if rate < 200 {
		t.Fatalf("load of %.0f RPC/s is below the 200 RPC/s the test needs", rate)
	}
}
