package overload

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// exempt reports whether method belongs to the services that are never
// shed: health checks, reflection and ORCA's load reports.
func exempt(method string) bool {
	return strings.HasPrefix(method, "/"+healthpb.Health_ServiceDesc.ServiceName+"/") ||
		strings.HasPrefix(method, "/grpc.reflection.") ||
		strings.HasPrefix(method, "/xds.service.orca.v3.OpenRcaService/")
}

// errShed is the status of a shed call: the instance is overloaded now,
// and another may serve the call.
var errShed = status.Error(codes.ResourceExhausted, "overload: instance overloaded; call shed")

// Tap admits or sheds a call when it arrives, before gRPC starts a
// goroutine for it; it is a tap.ServerInHandle, for grpc.InTapHandle. A
// shed call costs the server one header frame. An admitted call holds its
// slot until its handler returns (unary calls, with the interceptor) or
// opens (streams); one that ends before (an unknown method, a request
// that does not decode, a deadline that passes while it waits) frees it
// when its context ends. Its latency
// counts from its arrival, so that the time it waited for a goroutine to
// run it, invisible to an interceptor, counts as the load it is. Without
// Tap (a server takes one grpc.InTapHandle; a second panics), the
// interceptors admit or shed calls as they reach them.
func (l *Limiter) Tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	p := l.priority(info.FullMethodName)
	if p == Critical {
		return ctx, nil
	}
	if l.overloaded(p, l.inflight.Load()) {
		return nil, errShed
	}
	l.inflight.Add(1)
	t := &ticket{arrived: l.now()}
	// The call's context ends with the call, whatever becomes of it (an
	// unknown method, a request that does not decode): the slot is freed.
	t.stop = context.AfterFunc(ctx, func() { l.inflight.Add(-1) })
	return context.WithValue(ctx, ticketKey{}, t), nil
}

// ticket is a call Tap admitted.
type ticket struct {
	arrived time.Time
	stop    func() bool // stops the release at the call's end; false if it ran
}

type ticketKey struct{}

// UnaryServerInterceptor sheds unary calls over the limit before the
// handler runs, unless Tap admitted them.
func (l *Limiter) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if t, ok := ctx.Value(ticketKey{}).(*ticket); ok {
			// The slot is the handler's until it returns, whether or not
			// its context ends first (a short deadline, a hedge that lost):
			// a handler that does not watch its context is load still.
			if t.stop() {
				defer l.release(t.arrived)
			}
			return h(ctx, req)
		}
		done, ok := l.Allow(info.FullMethod)
		if !ok {
			return nil, errShed
		}
		defer done()
		return h(ctx, req)
	}
}

// StreamServerInterceptor sheds streams that open over the limit, unless
// Tap admitted them; a stream Tap admitted frees its slot here.
func (l *Limiter) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if t, ok := ss.Context().Value(ticketKey{}).(*ticket); ok {
			if t.stop() {
				l.inflight.Add(-1)
			}
			return h(srv, ss)
		}
		if !l.AllowStream(info.FullMethod) {
			return errShed
		}
		return h(srv, ss)
	}
}
