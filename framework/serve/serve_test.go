package serve_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/serve"
	"github.com/svckit/svckit/internal/testsvc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is a real gRPC server on 127.0.0.1 with the health and test
// services, and a client connected to it.
type server struct {
	srv      *grpc.Server
	cc       *grpc.ClientConn
	served   chan struct{} // closed once Serve has returned, with serveErr
	serveErr error
	started  chan string // the full method of each call, as its handler starts
}

func startServer(t *testing.T) *server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &server{served: make(chan struct{}), started: make(chan string, 16)}
	s.srv = grpc.NewServer(append(append(serve.DefaultLimits().ServerOptions(), serve.Keepalive()...),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			s.started <- info.FullMethod
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			s.started <- info.FullMethod
			return h(srv, ss)
		}))...)
	healthpb.RegisterHealthServer(s.srv, health.NewServer())
	testsvc.Register(s.srv)
	go func() { s.serveErr = s.srv.Serve(lis); close(s.served) }()
	s.cc, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() {
		s.srv.Stop()
		<-s.served
		_ = s.cc.Close()
	})
	return s
}

// waitStarted waits until the handler of method has started.
func (s *server) waitStarted(t *testing.T, method string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m := <-s.started:
			if m == method {
				return
			}
		case <-timeout:
			t.Fatalf("call of %s did not reach its handler within 5s", method)
		}
	}
}

// A stream that never ends (a health watch) is cut at the stop's deadline,
// and Stop says so.
func TestStopCutsStreamAtDeadline(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch, err := healthpb.NewHealthClient(s.cc).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatalf("watch: first status: %v", err)
	}
	s.waitStarted(t, "/grpc.health.v1.Health/Watch")

	const bound = 300 * time.Millisecond
	sctx, scancel := context.WithTimeout(context.Background(), bound)
	defer scancel()
	start := time.Now()
	err = serve.Stop(sctx, s.srv)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stop: want %v, have %v", context.DeadlineExceeded, err)
	}
	if took < bound || took > bound+2*time.Second {
		t.Errorf("stop: took %s, want %s to %s", took, bound, bound+2*time.Second)
	}
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("watch after stop: want code %s, have %v", codes.Unavailable, err)
	}
	<-s.served
	if s.serveErr != nil {
		t.Errorf("serve: want nil, have %v", s.serveErr)
	}
}

// A unary call in flight completes when it ends within the bound, and Stop
// returns as soon as it has, not at the deadline.
func TestStopLetsUnaryCallInBoundComplete(t *testing.T) {
	s := startServer(t)
	called := make(chan error, 1)
	go func() { called <- testsvc.Sleep(context.Background(), s.cc, 300*time.Millisecond) }()
	s.waitStarted(t, testsvc.SleepMethod)

	const bound = 10 * time.Second
	sctx, scancel := context.WithTimeout(context.Background(), bound)
	defer scancel()
	start := time.Now()
	if err := serve.Stop(sctx, s.srv); err != nil {
		t.Errorf("stop: want nil, have %v", err)
	}
	if took := time.Since(start); took > bound/2 {
		t.Errorf("stop: took %s, want it to return once the call ended (300ms)", took)
	}
	if err := <-called; err != nil {
		t.Errorf("sleep call: want nil, have %v", err)
	}
	<-s.served
	if s.serveErr != nil {
		t.Errorf("serve: want nil, have %v", s.serveErr)
	}
}

// A context already done stops the server at once, cutting the call in
// flight: the xDS server's stop, whose streams never end.
func TestStopWithDoneContextStopsAtOnce(t *testing.T) {
	s := startServer(t)
	called := make(chan error, 1)
	go func() { called <- testsvc.Sleep(context.Background(), s.cc, time.Minute) }()
	s.waitStarted(t, testsvc.SleepMethod)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := serve.Stop(ctx, s.srv); !errors.Is(err, context.Canceled) {
		t.Errorf("stop: want %v, have %v", context.Canceled, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("stop: took %s, want at once", took)
	}
	if err := <-called; status.Code(err) != codes.Unavailable {
		t.Errorf("sleep call: want code %s, have %v", codes.Unavailable, err)
	}
	<-s.served
}

func TestLimitsValidate(t *testing.T) {
	if err := serve.DefaultLimits().Validate(); err != nil {
		t.Errorf("default limits: %v", err)
	}
	for name, l := range map[string]serve.Limits{
		"zero recv":    {MaxRecvMsgSize: 0, MaxSendMsgSize: 1, MaxConcurrentStreams: 1},
		"neg send":     {MaxRecvMsgSize: 1, MaxSendMsgSize: -1, MaxConcurrentStreams: 1},
		"zero streams": {MaxRecvMsgSize: 1, MaxSendMsgSize: 1},
	} {
		if err := l.Validate(); err == nil {
			t.Errorf("%s: want an error, have nil", name)
		}
	}
}

// A message over MaxRecvMsgSize fails the call with ResourceExhausted.
func TestLimitsApply(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	l := serve.DefaultLimits()
	l.MaxRecvMsgSize = 16
	srv := grpc.NewServer(l.ServerOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer func() { srv.Stop(); <-served }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer cc.Close()
	_, err = healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "a-service-name-longer-than-16-bytes"})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("check with a 37-byte request: want code %s, have %v", codes.ResourceExhausted, err)
	}
}
