package proxy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/svckit/svckit/examples/fileserver"
	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/proxy"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startEtcd starts a one-member etcd and returns it with a client, both
// closed when t ends.
func startEtcd(t testing.TB) (*etcdtest.Cluster, *clientv3.Client) {
	t.Helper()
	c := etcdtest.Start(t)
	return c, c.Client(t)
}

// startApp runs a framework.App named name on 127.0.0.1, registered in etcd
// through cli, with register adding its services; it stops when t ends.
func startApp(t testing.TB, c *etcdtest.Cluster, cli *clientv3.Client, name string, register func(*grpc.Server), opts ...framework.Option) *framework.App {
	t.Helper()
	cfg := framework.DefaultConfig()
	cfg.Etcd = c.Endpoints()
	app, err := framework.New(name, append([]framework.Option{
		framework.WithConfig(cfg),
		framework.WithEtcd(cli),
		framework.WithoutSignals(),
		framework.WithPropagationDelay(0),
		framework.WithLogger(quiet),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	register(app.GRPC())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run: %v", name, err)
		}
	})
	select {
	case <-app.Started():
	case err := <-done:
		t.Fatalf("%s: Run: %v", name, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: not started within 20s", name)
	}
	return app
}

// startFileSrv runs a FileSrv instance over dir, set up as
// examples/fileserver.Main sets it up.
func startFileSrv(t testing.TB, c *etcdtest.Cluster, cli *clientv3.Client, dir string) *framework.App {
	t.Helper()
	svc, err := fileserver.NewDirService(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	return startApp(t, c, cli, "fileserver", func(s *grpc.Server) {
		fileserver.Register(s, svc, fileserver.MakeEndpoints(svc))
	}, framework.WithLimits(fileserver.Limits()),
		framework.WithServerOption(fileserver.ServerWindows()...))
}

// startProxy serves a proxy on 127.0.0.1 and returns it with its address; it
// stops when t ends.
func startProxy(t testing.TB, cli *clientv3.Client, opts ...proxy.Option) (*proxy.Proxy, string) {
	t.Helper()
	p, err := proxy.New(cli, append([]proxy.Option{proxy.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy: Serve: %v", err)
		}
	})
	return p, lis.Addr().String()
}

// waitRoute waits until the proxy routes grpcService to service.
func waitRoute(t testing.TB, p *proxy.Proxy, grpcService, service string) {
	t.Helper()
	poll.Until(t, 10*time.Second, "route "+grpcService+" → "+service, func() bool {
		return p.Routes()[grpcService] == service
	})
}

// dialProxy is what a client that cannot embed svckit does: a plain grpc-go
// connection to the proxy's address.
func dialProxy(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr,
		append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// probe records what a backend saw of each call: its metadata, deadline,
// and how its context ended. Its interceptors also send a header and a
// trailer back.
type probe struct {
	mu    sync.Mutex
	calls []seen
}

type seen struct {
	method   string
	md       metadata.MD
	deadline time.Time
	end      time.Time
	ctxErr   error
}

func (p *probe) record(ctx context.Context, method string) func() {
	md, _ := metadata.FromIncomingContext(ctx)
	dl, _ := ctx.Deadline()
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-backend-header", "h-"+md.Get("x-request-id")[0]))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-backend-trailer", "t-"+md.Get("x-request-id")[0]))
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.calls = append(p.calls, seen{method: method, md: md.Copy(), deadline: dl, end: time.Now(), ctxErr: ctx.Err()})
	}
}

func (p *probe) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if len(metadata.ValueFromIncomingContext(ctx, "x-request-id")) == 0 {
		return h(ctx, req)
	}
	done := p.record(ctx, info.FullMethod)
	defer done()
	return h(ctx, req)
}

func (p *probe) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if len(metadata.ValueFromIncomingContext(ss.Context(), "x-request-id")) == 0 {
		return h(srv, ss)
	}
	done := p.record(ss.Context(), info.FullMethod)
	defer done()
	return h(srv, ss)
}

// last returns the last call recorded with the request id, if any.
func (p *probe) last(id string) (seen, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.calls) - 1; i >= 0; i-- {
		if v := p.calls[i].md.Get("x-request-id"); len(v) > 0 && v[0] == id {
			return p.calls[i], true
		}
	}
	return seen{}, false
}

// The echo service: a bidirectional stream that sends back each message,
// for the fourth kind of call, which FileSrv lacks.
const (
	echoService = "svckit.proxytest.Echo"
	echoMethod  = "/" + echoService + "/Chat"
)

var echoDesc = grpc.ServiceDesc{
	ServiceName: echoService,
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Chat",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(_ any, s grpc.ServerStream) error {
			for {
				m := new(wrapperspb.StringValue)
				err := s.RecvMsg(m)
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				m.Value = "echo: " + m.Value
				if err := s.SendMsg(m); err != nil {
					return err
				}
			}
		},
	}},
}

// startProbe runs an App named "probe" serving the test service (Sleep)
// and the echo service, recording calls in the returned probe.
func startProbe(t testing.TB, c *etcdtest.Cluster, cli *clientv3.Client) *probe {
	t.Helper()
	pr := &probe{}
	startApp(t, c, cli, "probe", func(s *grpc.Server) {
		testsvc.Register(s)
		s.RegisterService(&echoDesc, struct{}{})
	}, framework.WithUnaryInterceptor(pr.unary), framework.WithStreamInterceptor(pr.stream))
	return pr
}
