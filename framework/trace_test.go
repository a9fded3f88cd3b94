package framework_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

// relay is a service whose one method calls testsvc on another service: the
// middle hop of client → A → B.
func relayDesc(down func(ctx context.Context) error) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "svckit.test.Relay",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Call", Handler: func(_ any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			req := new(emptypb.Empty)
			if err := dec(req); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, _ any) (any, error) { return &emptypb.Empty{}, down(ctx) }
			if in == nil {
				return h(ctx, req)
			}
			return in(ctx, req, &grpc.UnaryServerInfo{FullMethod: "/svckit.test.Relay/Call"}, h)
		}}},
	}
}

// startApp runs an App in-process until the test ends.
func startApp(t *testing.T, app *framework.App) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run: %v", app.Name(), err)
		}
	})
	select {
	case <-app.Started():
	case err := <-done:
		t.Fatalf("%s: Run: %v", app.Name(), err)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: not started", app.Name())
	}
}

// newClient returns the client.Client of cfg, closed at cleanup.
func newClient(t *testing.T, cfg framework.Config, opts ...client.Option) *client.Client {
	t.Helper()
	cl, err := cfg.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
	return cl
}

func TestTraceSpansClientToAToB(t *testing.T) {
	c := etcdtest.Start(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	quiet := slog.New(slog.DiscardHandler)
	cfg := framework.DefaultConfig()
	cfg.Etcd = c.Endpoints()
	newApp := func(name string) *framework.App {
		app, err := framework.New(name, framework.WithConfig(cfg), framework.WithoutSignals(),
			framework.WithPropagationDelay(0), framework.WithLogger(quiet), framework.WithTracerProvider(tp))
		if err != nil {
			t.Fatal(err)
		}
		return app
	}

	b := newApp("back")
	testsvc.Register(b.GRPC())
	startApp(t, b)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := newClient(t, cfg, client.WithTracerProvider(tp), client.WithLogger(quiet))
	toB, err := cl.Dial(ctx, "back")
	if err != nil {
		t.Fatal(err)
	}
	defer toB.Close()
	a := newApp("front")
	a.GRPC().RegisterService(relayDesc(func(ctx context.Context) error { return testsvc.Sleep(ctx, toB, 0) }), nil)
	startApp(t, a)

	toA, err := cl.Dial(ctx, "front")
	if err != nil {
		t.Fatal(err)
	}
	defer toA.Close()
	rootCtx, root := tp.Tracer("test").Start(ctx, "root")
	if err := toA.Invoke(rootCtx, "/svckit.test.Relay/Call", new(emptypb.Empty), new(emptypb.Empty)); err != nil {
		t.Fatalf("relay call: %v", err)
	}
	root.End()

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == root.SpanContext().TraceID() {
			spans[s.Name()+"/"+s.SpanKind().String()] = s
		}
	}
	want := []struct {
		name, parent string
	}{
		{"svckit.test.Relay/Call/client", "root/internal"},
		{"svckit.test.Relay/Call/server", "svckit.test.Relay/Call/client"},
		{"svckit.test.Test/Sleep/client", "svckit.test.Relay/Call/server"},
		{"svckit.test.Test/Sleep/server", "svckit.test.Test/Sleep/client"},
	}
	for _, w := range want {
		s, ok := spans[w.name]
		if !ok {
			t.Errorf("no span %s in trace %s; have %v", w.name, root.SpanContext().TraceID(), keys(spans))
			continue
		}
		p, ok := spans[w.parent]
		if !ok {
			t.Errorf("no parent span %s", w.parent)
			continue
		}
		if s.Parent().SpanID() != p.SpanContext().SpanID() {
			t.Errorf("span %s: parent %s, want %s (%s)", w.name, s.Parent().SpanID(), p.SpanContext().SpanID(), w.parent)
		}
	}
	if s, ok := spans["svckit.test.Test/Sleep/server"]; ok && s.SpanKind() != trace.SpanKindServer {
		t.Errorf("server span kind %s", s.SpanKind())
	}
}

// streamsDesc is a service with one method of each streaming kind: Collect
// (client-streaming: reads to the end, then answers once), Feed
// (server-streaming: three messages) and Hold (bidi: open until the caller
// goes away).
var streamsDesc = grpc.ServiceDesc{
	ServiceName: "svckit.test.Streams",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{
		{StreamName: "Collect", ClientStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			for {
				err := ss.RecvMsg(new(emptypb.Empty))
				if errors.Is(err, io.EOF) {
					return ss.SendMsg(&emptypb.Empty{})
				}
				if err != nil {
					return err
				}
			}
		}},
		{StreamName: "Feed", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			if err := ss.RecvMsg(new(emptypb.Empty)); err != nil {
				return err
			}
			for range 3 {
				if err := ss.SendMsg(&emptypb.Empty{}); err != nil {
					return err
				}
			}
			return nil
		}},
		{StreamName: "Hold", ServerStreams: true, ClientStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			<-ss.Context().Done()
			return ss.Context().Err()
		}},
	},
}

// TestTraceClientStreamSpansEnd makes real calls of each streaming kind
// through a client.Client with an in-memory span recorder, and checks that each client
// span ends with the call's status: after the one response of a
// client-streaming call (CloseAndRecv returns nil), at io.EOF of a
// server-streaming one, and when the caller cancels a bidi stream it no
// longer reads.
func TestTraceClientStreamSpansEnd(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cc := dialStreams(ctx, t, tp)

	for _, tc := range []struct {
		method string
		call   func(cancel context.CancelFunc, s grpc.ClientStream) error
		want   string // rpc.response.status_code
	}{
		{"Collect", callCollect, "OK"},
		{"Feed", callFeed, "OK"},
		{"Hold", callHold, "CANCELLED"},
	} {
		t.Run(tc.method, func(t *testing.T) {
			cctx, ccancel := context.WithCancel(ctx)
			defer ccancel()
			s, err := cc.NewStream(cctx, streamDesc(tc.method), "/svckit.test.Streams/"+tc.method)
			if err != nil {
				t.Fatalf("new stream: %v", err)
			}
			if err := tc.call(ccancel, s); err != nil {
				t.Fatalf("call: %v", err)
			}
			name := "svckit.test.Streams/" + tc.method
			if have := clientSpanStatus(t, rec, name); have != tc.want {
				t.Errorf("span %s: rpc.response.status_code %q, want %q", name, have, tc.want)
			}
		})
	}
}

// dialStreams starts etcd and an App "streams" serving streamsDesc, and
// returns a conn to it through a client.Client traced by tp.
func dialStreams(ctx context.Context, t *testing.T, tp trace.TracerProvider) *grpc.ClientConn {
	t.Helper()
	c := etcdtest.Start(t)
	quiet := slog.New(slog.DiscardHandler)
	cfg := framework.DefaultConfig()
	cfg.Etcd = c.Endpoints()
	app, err := framework.New("streams", framework.WithConfig(cfg), framework.WithoutSignals(),
		framework.WithPropagationDelay(0), framework.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	app.GRPC().RegisterService(&streamsDesc, nil)
	startApp(t, app)
	cc, err := newClient(t, cfg, client.WithTracerProvider(tp), client.WithLogger(quiet)).Dial(ctx, "streams")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// callCollect makes a client-streaming call: three messages, then
// CloseAndRecv.
func callCollect(_ context.CancelFunc, s grpc.ClientStream) error {
	for range 3 {
		if err := s.SendMsg(&emptypb.Empty{}); err != nil {
			return err
		}
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	return s.RecvMsg(new(emptypb.Empty)) // CloseAndRecv
}

// callFeed makes a server-streaming call and reads to io.EOF.
func callFeed(_ context.CancelFunc, s grpc.ClientStream) error {
	if err := s.SendMsg(&emptypb.Empty{}); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for {
		if err := s.RecvMsg(new(emptypb.Empty)); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// callHold opens a bidi stream, sends once, then cancels it and never reads
// again.
func callHold(cancel context.CancelFunc, s grpc.ClientStream) error {
	if err := s.SendMsg(&emptypb.Empty{}); err != nil {
		return err
	}
	cancel() // and never read again
	return nil
}

// streamDesc returns the StreamDesc of method in streamsDesc, or its first
// if there is none of that name.
func streamDesc(method string) *grpc.StreamDesc {
	desc := &streamsDesc.Streams[0]
	for i := range streamsDesc.Streams {
		if streamsDesc.Streams[i].StreamName == method {
			desc = &streamsDesc.Streams[i]
		}
	}
	return desc
}

// clientSpanStatus waits up to 5s for the client span name to end in rec
// and returns its rpc.response.status_code ("" if it has none).
func clientSpanStatus(t *testing.T, rec *tracetest.SpanRecorder, name string) string {
	t.Helper()
	var span sdktrace.ReadOnlySpan
	poll.Until(t, 5*time.Second, "client span "+name+" ended", func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == name && s.SpanKind() == trace.SpanKindClient {
				span = s
				return true
			}
		}
		return false
	})
	have := ""
	for _, a := range span.Attributes() {
		if a.Key == attribute.Key("rpc.response.status_code") {
			have = a.Value.AsString()
		}
	}
	return have
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
