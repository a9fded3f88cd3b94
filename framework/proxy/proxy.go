package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/serve"
)

// syncWait bounds how long a call waits for the first routing table, e.g.
// while etcd is unreachable at start.
const syncWait = 10 * time.Second

// Proxy forwards gRPC calls to the svckit services registered in etcd. Build
// it with New and run it with Serve.
type Proxy struct {
	cli      *clientv3.Client
	opts     options
	log      *slog.Logger
	srv      *grpc.Server
	health   *health.Server
	routes   *routes
	client   *client.Client
	backends *backends
	served   atomic.Bool
}

// New returns a proxy that routes with the registrations cli reads under
// the prefix (default "services/"). It validates the options and touches
// neither network nor etcd; the caller keeps cli and closes it after Serve
// returns.
func New(cli *clientv3.Client, opts ...Option) (*Proxy, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if cli == nil {
		return nil, errors.New("proxy: nil etcd client")
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	log := o.logger.With("component", "proxy")
	p := &Proxy{
		cli:    cli,
		opts:   o,
		log:    log,
		health: health.NewServer(),
		routes: newRoutes(o.prefix, log),
	}
	c, err := newClient(cli, o, log)
	if err != nil {
		return nil, err
	}
	p.client = c
	p.backends = newBackends(o.maxBackends, p.dial)
	p.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	// The limits and keepalive policy of the App's (see package serve): its
	// clients' connections are recycled too, so that they spread over
	// proxies started since.
	limits := serve.Limits{MaxRecvMsgSize: o.maxMsgSize, MaxSendMsgSize: o.maxMsgSize, MaxConcurrentStreams: o.maxStreams}
	sopts := append(append(limits.ServerOptions(), serve.Keepalive()...),
		grpc.UnknownServiceHandler(p.handle),
		grpc.ForceServerCodecV2(codec{}),
		grpc.MaxHeaderListSize(o.maxHeaderBytes))
	p.srv = grpc.NewServer(append(sopts, o.server...)...)
	healthpb.RegisterHealthServer(p.srv, p.health)
	return p, nil
}

// Serve watches the registrations, serves lis until ctx is done, then stops
// gracefully within the shutdown timeout and closes every backend
// connection. Its health service says SERVING once the first routing table
// is in. It returns nil after a clean stop, and may be called once.
func (p *Proxy) Serve(ctx context.Context, lis net.Listener) (err error) {
	if !p.served.CompareAndSwap(false, true) {
		return errors.New("proxy: Serve called twice")
	}
	b := naming.NewBuilder(p.cli, naming.WithResolverLogger(p.log))
	target := resolver.Target{URL: url.URL{Scheme: naming.Scheme, Path: "/" + strings.TrimSuffix(p.opts.prefix, "/")}}
	watch, err := b.Build(target, p.routes, resolver.BuildOptions{})
	if err != nil {
		return fmt.Errorf("proxy: watch %s: %w", p.opts.prefix, err)
	}
	defer func() {
		watch.Close()
		err = errors.Join(err, p.backends.close())
	}()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-p.routes.synced:
			p.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		case <-stop:
		}
	})
	defer wg.Wait()
	defer close(stop)

	served := make(chan error, 1)
	go func() { served <- p.srv.Serve(lis) }()
	select {
	case err := <-served:
		p.srv.Stop()
		return fmt.Errorf("proxy: serve: %w", err)
	case <-ctx.Done():
	}
	p.health.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), p.opts.shutdownTimeout)
	defer cancel()
	if serve.Stop(sctx, p.srv) != nil {
		p.log.Warn("graceful stop timed out; cut calls in flight", "timeout", p.opts.shutdownTimeout)
	}
	if err := <-served; err != nil {
		return fmt.Errorf("proxy: serve: %w", err)
	}
	return nil
}

// Routes returns the routing table: each gRPC service that some instance
// publishes now → the svckit service its calls go to.
func (p *Proxy) Routes() map[string]string { return p.routes.snapshot() }

// newClient returns the Client that dials the backends: through cli, which
// it borrows, under the proxy's prefix, without waiting, with the proxy's
// message size limits, then the WithBackendOptions.
func newClient(cli *clientv3.Client, o options, log *slog.Logger) (*client.Client, error) {
	n := o.maxMsgSize
	c, err := client.NewFromEtcd(cli, append([]client.Option{
		client.WithPrefix(o.prefix),
		client.WithoutWait(),
		client.WithLogger(log),
		client.WithGRPCOption(grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(n), grpc.MaxCallSendMsgSize(n))),
	}, o.dial...)...)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return c, nil
}

// dial opens the connection to one svckit service.
func (p *Proxy) dial(ctx context.Context, service string) (*grpc.ClientConn, error) {
	return p.client.Dial(ctx, service)
}

// serviceOf returns the gRPC service of a full method "/pkg.Svc/Method".
func serviceOf(method string) (string, bool) {
	svc, m, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	return svc, ok && svc != "" && m != "" && !strings.Contains(m, "/")
}

// handle is the unknown-service handler: every call but the proxy's own
// health service.
func (p *Proxy) handle(_ any, ss grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "proxy: stream without a method")
	}
	svc, ok := serviceOf(method)
	if !ok {
		return status.Errorf(codes.Unimplemented, "proxy: malformed method %q", method)
	}
	ctx := ss.Context()
	select {
	case <-p.routes.synced:
	default:
		t := time.NewTimer(syncWait)
		defer t.Stop()
		select {
		case <-p.routes.synced:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-t.C:
			return status.Errorf(codes.Unavailable, "proxy: no routing table from etcd after %s", syncWait)
		}
	}
	rt, ok := p.routes.lookup(svc)
	if !ok {
		return status.Errorf(codes.Unimplemented, "proxy: no instance under %q publishes gRPC service %q", p.opts.prefix, svc)
	}
	if rt.instances == 0 {
		return status.Errorf(codes.Unavailable, "proxy: no instance of %q (gRPC service %q) is registered", rt.service, svc)
	}
	be, err := p.backends.acquire(ctx, rt.service)
	switch {
	case errors.Is(err, errFull):
		return status.Errorf(codes.ResourceExhausted, "proxy: %d backend connections, all in use: %q cannot get one", p.opts.maxBackends, rt.service)
	case errors.Is(err, errClosed):
		return status.Error(codes.Unavailable, "proxy: stopping")
	case err != nil:
		return status.Error(codes.Internal, err.Error())
	}
	defer p.backends.release(be)
	return forward(ss, be.cc, method)
}

// errBackendEnded: the backend ended the call while the client was still
// sending; its status comes from the receiving side.
var errBackendEnded = errors.New("proxy: backend ended the call")

// bidi describes every forwarded call: the proxy does not know the
// method's kind, and a bidirectional stream carries all four.
func bidi() *grpc.StreamDesc { return &grpc.StreamDesc{ServerStreams: true, ClientStreams: true} }

// forward runs one call through cc: client messages up, backend headers,
// messages and trailers down, the backend's status back as it is. The call
// is marked for the balancer as a stream unless this process's protobuf
// registry says its method is unary: the proxy cannot tell a long stream
// from a slow unary call, and a stream's duration taken as a latency sample
// would keep its instance out of the picks that follow.
func forward(ss grpc.ServerStream, cc *grpc.ClientConn, method string) error {
	in := ss.Context()
	md, _ := metadata.FromIncomingContext(in)
	ctx, cancel := context.WithCancel(in)
	defer cancel()
	ctx = lb.WithUnknownAsStream(metadata.NewOutgoingContext(ctx, forwarded(md)))
	copts := []grpc.CallOption{grpc.ForceCodecV2(codec{})}
	if sub := contentSubtype(md); sub != "" {
		copts = append(copts, grpc.CallContentSubtype(sub))
	}
	cs, err := cc.NewStream(ctx, bidi(), method, copts...)
	if err != nil {
		return err
	}
	up, down := make(chan error, 1), make(chan error, 1)
	go func() { up <- sendUp(ss, cs) }()
	go func() { down <- sendDown(cs, ss) }()
	for {
		select {
		case err := <-up:
			up = nil
			if err == nil || errors.Is(err, errBackendEnded) {
				continue
			}
			return err // the client's side failed: cancel drops the backend call
		case err := <-down:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// sendUp forwards the client's messages, then half-closes.
func sendUp(ss grpc.ServerStream, cs grpc.ClientStream) error {
	for {
		var f frame
		if err := ss.RecvMsg(&f); err != nil {
			if errors.Is(err, io.EOF) {
				return cs.CloseSend()
			}
			return err
		}
		err := cs.SendMsg(&f)
		f.free()
		if errors.Is(err, io.EOF) {
			return errBackendEnded
		}
		if err != nil {
			return err
		}
	}
}

// sendDown forwards the backend's headers, then its messages, then its
// trailer; it returns io.EOF when the backend ended the call with OK, else
// its status, or the error of sending to the client. It reads the trailer
// only once RecvMsg has failed, as grpc-go requires: the backend
// connection's reader stores it, unsynchronised, when it arrives, so a read
// after a failed send to the client, with the backend still running, races
// with that store (and has nothing to forward).
func sendDown(cs grpc.ClientStream, ss grpc.ServerStream) error {
	if h, err := cs.Header(); err == nil {
		if h = forwarded(h); len(h) > 0 {
			if err := ss.SendHeader(h); err != nil {
				return err
			}
		}
	}
	for {
		var f frame
		if err := cs.RecvMsg(&f); err != nil {
			if tr := forwarded(cs.Trailer()); len(tr) > 0 {
				ss.SetTrailer(tr)
			}
			return err
		}
		err := ss.SendMsg(&f)
		f.free()
		if err != nil {
			return err
		}
	}
}
