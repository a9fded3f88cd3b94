package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	pb "github.com/svckit/svckit/examples/fileserver/proto/fileserver/v1"
	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/proxy"
	"github.com/svckit/svckit/internal/logsink"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

var fileService = pb.FileService_ServiceDesc.ServiceName

// upload sends data to path through fs as the generated stub does, in 1 MiB
// chunks, and returns the server's SHA-256.
func upload(ctx context.Context, fs pb.FileServiceClient, path string, data []byte) (string, error) {
	sum := sha256.Sum256(data)
	st, err := fs.Upload(ctx)
	if err != nil {
		return "", err
	}
	hdr := &pb.UploadHeader{Path: path, Size: int64(len(data)), Sha256: hex.EncodeToString(sum[:])}
	if err := st.Send(&pb.UploadRequest{Msg: &pb.UploadRequest_Header{Header: hdr}}); err != nil {
		_, err = st.CloseAndRecv()
		return "", err
	}
	for off := 0; off < len(data); off += 1 << 20 {
		end := min(off+1<<20, len(data))
		if err := st.Send(&pb.UploadRequest{Msg: &pb.UploadRequest_Chunk{Chunk: data[off:end]}}); err != nil {
			break // CloseAndRecv says why
		}
	}
	resp, err := st.CloseAndRecv()
	if err != nil {
		return "", err
	}
	return resp.GetSha256(), nil
}

// download reads path through fs and returns its size, its SHA-256 as
// computed here, and the one the server announced.
func download(ctx context.Context, fs pb.FileServiceClient, path string) (int64, string, string, error) {
	st, err := fs.Download(ctx, &pb.DownloadRequest{Path: path})
	if err != nil {
		return 0, "", "", err
	}
	h := sha256.New()
	var n int64
	announced := ""
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return n, hex.EncodeToString(h.Sum(nil)), announced, nil
		}
		if err != nil {
			return n, "", "", err
		}
		if i := m.GetInfo(); i != nil {
			announced = i.GetSha256()
		}
		h.Write(m.GetChunk())
		n += int64(len(m.GetChunk()))
	}
}

// TestFileSrvThroughProxy: a client that knows only the proxy's address and
// FileSrv's generated stubs makes unary calls, uploads (client streaming)
// and downloads 64 MiB (server streaming), intact, from two FileSrv
// instances.
func TestFileSrvThroughProxy(t *testing.T) {
	c, cli := startEtcd(t)
	dir := t.TempDir()
	startFileSrv(t, c, cli, dir)
	startFileSrv(t, c, cli, dir) // a second instance over the same files
	p, addr := startProxy(t, cli)
	waitRoute(t, p, fileService, "fileserver")
	fs := pb.NewFileServiceClient(dialProxy(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	ls, err := fs.List(ctx, &pb.ListRequest{})
	if err != nil || len(ls.GetEntries()) != 0 {
		t.Fatalf("list empty root: have %v, %v; want no entries", ls.GetEntries(), err)
	}
	data := make([]byte, 64<<20)
	_, _ = rand.Read(data)
	want := sha256.Sum256(data)
	have, err := upload(ctx, fs, "big/file.bin", data)
	if err != nil || have != hex.EncodeToString(want[:]) {
		t.Fatalf("upload 64 MiB: have %s, %v; want %x", have, err, want)
	}
	st, err := fs.Stat(ctx, &pb.StatRequest{Path: "big/file.bin"})
	if err != nil || st.GetInfo().GetSize() != int64(len(data)) || st.GetSha256() != hex.EncodeToString(want[:]) {
		t.Fatalf("stat: have %v, %v", st, err)
	}
	start := time.Now()
	n, got, announced, err := download(ctx, fs, "big/file.bin")
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	if n != int64(len(data)) || got != hex.EncodeToString(want[:]) || announced != got {
		t.Fatalf("download: have %d bytes, SHA-256 %s (announced %s); want %d, %x", n, got, announced, len(data), want)
	}
	t.Logf("64 MiB download through the proxy: %s", time.Since(start).Round(time.Millisecond))
	ls, err = fs.List(ctx, &pb.ListRequest{Dir: "big"})
	if err != nil || len(ls.GetEntries()) != 1 || ls.GetEntries()[0].GetPath() != "big/file.bin" {
		t.Fatalf("list big: have %v, %v", ls.GetEntries(), err)
	}
	if _, err := fs.Delete(ctx, &pb.DeleteRequest{Path: "big/file.bin"}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	// The backend's status comes back as it is: code and message.
	_, err = fs.Stat(ctx, &pb.StatRequest{Path: "big/file.bin"})
	if s := status.Convert(err); s.Code() != codes.NotFound || !strings.Contains(s.Message(), "big/file.bin") {
		t.Fatalf("stat after delete: have %v; want NotFound naming the file", err)
	}
	_, err = fs.Stat(ctx, &pb.StatRequest{Path: "../etc/passwd"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("stat ../etc/passwd: have %v; want InvalidArgument", err)
	}
}

// TestUnknownServiceIsUnimplemented: a gRPC service no instance publishes
// gets Unimplemented naming it; a method the backend lacks gets the
// backend's own Unimplemented.
func TestUnknownServiceIsUnimplemented(t *testing.T) {
	c, cli := startEtcd(t)
	startProbe(t, c, cli)
	p, addr := startProxy(t, cli)
	waitRoute(t, p, testsvc.ServiceName, "probe")
	cc := dialProxy(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct{ method, want string }{
		{"/nope.v1.Nowhere/Call", `"nope.v1.Nowhere"`},
		{"/" + testsvc.ServiceName + "/NoSuchMethod", "NoSuchMethod"},
	} {
		err := cc.Invoke(ctx, tc.method, &emptypb.Empty{}, &emptypb.Empty{})
		if s := status.Convert(err); s.Code() != codes.Unimplemented || !strings.Contains(s.Message(), tc.want) {
			t.Errorf("%s: have %v; want Unimplemented naming %s", tc.method, err, tc.want)
		}
	}
}

// TestKnownServiceWithoutInstanceIsUnavailable: an instance that publishes
// a service but cannot be reached, and then no instance at all, give
// Unavailable.
func TestKnownServiceWithoutInstanceIsUnavailable(t *testing.T) {
	_, cli := startEtcd(t)
	p, addr := startProxy(t, cli)
	reg, err := naming.NewRegistrar(cli, naming.Instance{Service: "ghost", Addr: "127.0.0.1:1",
		Metadata: naming.Metadata{Services: []string{"ghost.v1.Ghost"}}}, naming.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := reg.Register(ctx); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, p, "ghost.v1.Ghost", "ghost")
	cc := dialProxy(t, addr)
	call := func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return cc.Invoke(cctx, "/ghost.v1.Ghost/Boo", &emptypb.Empty{}, &emptypb.Empty{})
	}
	if err := call(); status.Code(err) != codes.Unavailable {
		t.Fatalf("unreachable instance: have %v; want Unavailable", err)
	}
	if err := reg.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	var last error
	poll.Until(t, 10*time.Second, "Unavailable naming the service once deregistered", func() bool {
		last = call()
		s := status.Convert(last)
		return s.Code() == codes.Unavailable && strings.Contains(s.Message(), `no instance of "ghost"`)
	})
}

// TestDeadlineEnforcedAtBackend: the client's deadline reaches the backend,
// which ends the call when it passes, not when its own work would have.
func TestDeadlineEnforcedAtBackend(t *testing.T) {
	c, cli := startEtcd(t)
	pr := startProbe(t, c, cli)
	p, addr := startProxy(t, cli)
	waitRoute(t, p, testsvc.ServiceName, "probe")
	cc := dialProxy(t, addr)

	start := time.Now()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "deadline"), 300*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	err := testsvc.Sleep(ctx, cc, 10*time.Second)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Sleep 10s with a 300ms deadline: have %v; want DeadlineExceeded", err)
	}
	var s seen
	poll.Until(t, 3*time.Second, "backend handler ends", func() (ok bool) { s, ok = pr.last("deadline"); return ok })
	if s.deadline.IsZero() {
		t.Fatal("backend: no deadline on the call")
	}
	if d := s.deadline.Sub(deadline); d < -50*time.Millisecond || d > 50*time.Millisecond {
		t.Errorf("backend deadline %s from the client's; want within 50ms", d)
	}
	if s.ctxErr == nil {
		t.Error("backend: context not done when the handler returned")
	}
	if took := s.end.Sub(start); took > 2*time.Second {
		t.Errorf("backend handler ran %s; want it cut at the 300ms deadline", took)
	}
	t.Logf("backend deadline %s from the client's; backend ended %s after the call began (%v)",
		s.deadline.Sub(deadline), s.end.Sub(start).Round(time.Millisecond), s.ctxErr)
}

// TestMetadataRoundTrip: request metadata and trace context reach the
// backend, transport headers do not, the backend's header and trailer reach
// the client, and no value is logged.
func TestMetadataRoundTrip(t *testing.T) {
	c, cli := startEtcd(t)
	pr := startProbe(t, c, cli)
	logs := &logsink.Buffer{}
	p, addr := startProxy(t, cli, proxy.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	waitRoute(t, p, testsvc.ServiceName, "probe")
	cc := dialProxy(t, addr, grpc.WithUserAgent("client-ua/1"))
	const (
		traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		tracestate  = "congo=t61rcWkgMzE"
		baggage     = "user=alice"
		secret      = "Bearer s3cr3t-t0ken"
	)
	sent := metadata.Pairs("x-request-id", "md", "authorization", secret, "traceparent", traceparent,
		"tracestate", tracestate, "baggage", baggage, "x-bin-bin", string([]byte{0, 1, 2, 255}),
		"x-multi", "a", "x-multi", "b")
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), sent), 10*time.Second)
	defer cancel()
	check := func(name string, header, trailer metadata.MD) {
		t.Helper()
		s, ok := pr.last("md")
		if !ok {
			t.Fatalf("%s: backend saw no call", name)
		}
		for k, want := range sent {
			if have := s.md.Get(k); strings.Join(have, "|") != strings.Join(want, "|") {
				t.Errorf("%s: backend header %s: have %q, want %q", name, k, have, want)
			}
		}
		if ua := strings.Join(s.md.Get("user-agent"), ""); strings.Contains(ua, "client-ua") {
			t.Errorf("%s: backend user-agent %q: the client's crossed the proxy", name, ua)
		}
		if v := header.Get("x-backend-header"); len(v) != 1 || v[0] != "h-md" {
			t.Errorf("%s: client header x-backend-header: have %q, want h-md", name, v)
		}
		if v := trailer.Get("x-backend-trailer"); len(v) != 1 || v[0] != "t-md" {
			t.Errorf("%s: client trailer x-backend-trailer: have %q, want t-md", name, v)
		}
	}

	var header, trailer metadata.MD
	if err := testsvc.Sleep(ctx, cc, 0, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
		t.Fatalf("unary: %v", err)
	}
	check("unary", header, trailer)

	st, err := cc.NewStream(ctx, &echoDesc.Streams[0], echoMethod)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(wrapperspb.String("hi")); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for err = st.RecvMsg(new(wrapperspb.StringValue)); err == nil; err = st.RecvMsg(new(wrapperspb.StringValue)) {
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("stream: %v", err)
	}
	header, _ = st.Header()
	check("stream", header, st.Trailer())

	for _, v := range []string{"s3cr3t", "alice", "4bf92f35"} {
		if strings.Contains(logs.String(), v) {
			t.Errorf("proxy log holds metadata value %q:\n%s", v, logs.String())
		}
	}
}

// TestBidiStreaming: messages cross both ways while the stream is open, one
// answer per message before the next is sent.
func TestBidiStreaming(t *testing.T) {
	c, cli := startEtcd(t)
	startProbe(t, c, cli)
	p, addr := startProxy(t, cli)
	waitRoute(t, p, echoService, "probe")
	cc := dialProxy(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := cc.NewStream(ctx, &echoDesc.Streams[0], echoMethod)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		want := strings.Repeat("x", i)
		if err := st.SendMsg(wrapperspb.String(want)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		have := new(wrapperspb.StringValue)
		if err := st.RecvMsg(have); err != nil || have.GetValue() != "echo: "+want {
			t.Fatalf("recv %d: have %q, %v", i, have.GetValue(), err)
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := st.RecvMsg(new(wrapperspb.StringValue)); !errors.Is(err, io.EOF) {
		t.Fatalf("end: have %v, want io.EOF", err)
	}
}

// TestHealthServedLocally: the proxy answers the health service itself.
func TestHealthServedLocally(t *testing.T) {
	c, cli := startEtcd(t)
	startProbe(t, c, cli)
	_, addr := startProxy(t, cli)
	h := healthpb.NewHealthClient(dialProxy(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	poll.Until(t, 10*time.Second, "proxy SERVING", func() bool {
		r, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	// The probe's health server would know its own services; the proxy's
	// does not.
	if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: testsvc.ServiceName}); status.Code(err) != codes.NotFound {
		t.Fatalf("health of %s: have %v; want NotFound from the proxy's own health service", testsvc.ServiceName, err)
	}
}

// TestMaxMsgSize: a request over the proxy's limit fails there with
// ResourceExhausted and never reaches the backend.
func TestMaxMsgSize(t *testing.T) {
	c, cli := startEtcd(t)
	pr := startProbe(t, c, cli)
	p, addr := startProxy(t, cli, proxy.WithMaxMsgSize(64<<10))
	waitRoute(t, p, testsvc.ServiceName, "probe")
	cc := dialProxy(t, addr)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "big"), 10*time.Second)
	defer cancel()
	err := cc.Invoke(ctx, testsvc.SleepMethod, wrapperspb.Bytes(bytes.Repeat([]byte{1}, 100<<10)), &emptypb.Empty{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("100 KiB request, 64 KiB limit: have %v; want ResourceExhausted", err)
	}
	if _, ok := pr.last("big"); ok {
		t.Fatal("the backend saw the refused call")
	}
	if err := testsvc.Sleep(ctx, cc, 0); err != nil {
		t.Fatalf("small request: %v", err)
	}
}

func TestNewRefusesInvalidOptions(t *testing.T) {
	_, cli := startEtcd(t)
	for name, opts := range map[string][]proxy.Option{
		"nil logger":         {proxy.WithLogger(nil)},
		"zero msg size":      {proxy.WithMaxMsgSize(0)},
		"zero streams":       {proxy.WithMaxConcurrentStreams(0)},
		"zero backends":      {proxy.WithMaxBackends(0)},
		"zero header size":   {proxy.WithMaxHeaderListSize(0)},
		"zero shutdown":      {proxy.WithShutdownTimeout(0)},
		"prefix without /":   {proxy.WithPrefix("services")},
		"empty prefix":       {proxy.WithPrefix("")},
		"bad backend option": {proxy.WithBackendOptions(client.WithTimeout(0))},
	} {
		if _, err := proxy.New(cli, opts...); err == nil {
			t.Errorf("%s: have nil error", name)
		}
	}
	if _, err := proxy.New(nil); err == nil {
		t.Error("nil client: have nil error")
	}
}
