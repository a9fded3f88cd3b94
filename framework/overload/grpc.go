package overload

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
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

// UnaryServerInterceptor sheds unary calls over the limit before the
// handler runs.
func (l *Limiter) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		done, ok := l.Allow(info.FullMethod)
		if !ok {
			return nil, errShed
		}
		defer done()
		return h(ctx, req)
	}
}

// StreamServerInterceptor sheds streams that open over the limit.
func (l *Limiter) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if !l.AllowStream(info.FullMethod) {
			return errShed
		}
		return h(srv, ss)
	}
}
