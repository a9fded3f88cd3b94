package main

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/internal/logsink"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/proc"
	"github.com/svckit/svckit/internal/testsvc"
)

// TestProxyForwardsAndStops: svckit proxy prints its address, forwards a
// call to a registered App, answers an unknown service with Unimplemented,
// and returns nil once stopped. It is given --balancer by the name the
// policy had before the svckit_ prefix, which must still work, with a
// warning, and --max-header-bytes 256 KiB, so a call with 128 KiB of
// metadata (over the 64 KiB default) must pass.
func TestProxyForwardsAndStops(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	cfg := framework.DefaultConfig()
	cfg.Etcd = c.Endpoints()
	app, err := framework.New("testsvc", framework.WithConfig(cfg), framework.WithEtcd(cli),
		framework.WithoutSignals(), framework.WithPropagationDelay(0),
		framework.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	testsvc.Register(app.GRPC())
	actx, stopApp := context.WithCancel(context.Background())
	appDone := make(chan error, 1)
	go func() { appDone <- app.Run(actx) }()
	defer func() {
		stopApp()
		if err := <-appDone; err != nil {
			t.Errorf("app: %v", err)
		}
	}()

	var out, errb logsink.Buffer
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"proxy", "--listen", "127.0.0.1:0", "--etcd", c.Endpoint(0), "--balancer", "p2c_ewma", "--max-header-bytes", "262144"}, &out, &errb)
	}()
	stopped := false
	defer func() {
		if !stopped {
			stop()
			<-done
		}
	}()
	re := regexp.MustCompile(`serving on (\S+)`)
	poll.Until(t, 10*time.Second, "svckit proxy serving", func() bool { return re.MatchString(out.String()) })
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Errorf("stdout: have %d lines, want 1:\n%s", n, out.String())
	}
	cc, err := grpc.NewClient(re.FindStringSubmatch(out.String())[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	poll.Until(t, 10*time.Second, "Sleep through the proxy", func() bool { return testsvc.Sleep(cctx, cc, 0) == nil })
	mctx := metadata.AppendToOutgoingContext(cctx, "x-big", strings.Repeat("b", 128<<10))
	if err := testsvc.Sleep(mctx, cc, 0); err != nil {
		t.Fatalf("Sleep with 128 KiB of metadata, --max-header-bytes 262144: %v", err)
	}
	err = cc.Invoke(cctx, "/nope.Nope/Call", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("unknown service: have %v, want Unimplemented", err)
	}

	stop()
	stopped = true
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("svckit proxy: %v\n%s", err, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("svckit proxy did not stop within 20s")
	}
	if want := "balancer=p2c_ewma use=" + lb.P2CEWMA; !strings.Contains(errb.String(), want) {
		t.Errorf("stderr: want a deprecation warning with %q, have:\n%s", want, errb.String())
	}
}

func TestProxyRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--listen", "nowhere"},
		{"--max-msg-size", "0"},
		{"--max-streams", "0"},
		{"--max-header-bytes", "0"},
		{"--max-header-bytes", "4294967296"},
		{"--max-backends", "-1"},
		{"--prefix", "services"},
		{"--shutdown-timeout", "soon"},
		{"--tls-cert", "c.pem"},
		{"--backend-cert", "c.pem"},
		{"--balancer", "no_such_policy"},
		{"--no-such-flag"},
		{"extra"},
	} {
		var out, errb logsink.Buffer
		err := run(context.Background(), append([]string{"proxy", "--etcd", "127.0.0.1:1"}, args...), &out, &errb)
		if err == nil {
			t.Errorf("%v: have nil error", args)
			continue
		}
		if strings.Contains(err.Error(), "\n") || out.String() != "" || errb.String() != "" {
			t.Errorf("%v: want one line of error and no output; have %q, stdout %q, stderr %q", args, err, out.String(), errb.String())
		}
	}
}

// TestProxyStopsGracefullyOnSIGTERM: the svckit binary, sent SIGTERM while
// a call is in flight, lets the call finish and exits 0.
func TestProxyStopsGracefullyOnSIGTERM(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "svckit")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build svckit: %v\n%s", err, out)
	}
	c := etcdtest.Start(t)
	cli := c.Client(t)
	cfg := framework.DefaultConfig()
	cfg.Etcd = c.Endpoints()
	arrived := make(chan struct{}, 1)
	app, err := framework.New("testsvc", framework.WithConfig(cfg), framework.WithEtcd(cli),
		framework.WithoutSignals(), framework.WithPropagationDelay(0),
		framework.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		framework.WithUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			select {
			case arrived <- struct{}{}:
			default:
			}
			return h(ctx, req)
		}))
	if err != nil {
		t.Fatal(err)
	}
	testsvc.Register(app.GRPC())
	actx, stopApp := context.WithCancel(context.Background())
	appDone := make(chan error, 1)
	go func() { appDone <- app.Run(actx) }()
	defer func() { stopApp(); <-appDone }()

	p, err := proc.Start(bin, []string{"proxy", "--listen", "127.0.0.1:0", "--etcd", c.Endpoint(0)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	m, err := p.WaitFor(regexp.MustCompile(`serving on (\S+)`), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(m[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	poll.Until(t, 10*time.Second, "a call through the proxy", func() bool { return testsvc.Sleep(ctx, cc, 0) == nil })
	for len(arrived) > 0 {
		<-arrived
	}
	inFlight := make(chan error, 1)
	go func() { inFlight <- testsvc.Sleep(ctx, cc, time.Second) }()
	select {
	case <-arrived:
	case <-ctx.Done():
		t.Fatal("the call never reached the backend")
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-inFlight; err != nil {
		t.Errorf("call in flight during SIGTERM: %v", err)
	}
	code, err := p.Wait(20 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("exit: code %d, %v\n%s", code, err, p.Output())
	}
}
