package framework

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/internal/tracing"
)

// interceptors returns the server's interceptor chains, outermost first:
// ORCA's count of calls and errors (with WithORCA, so load is nil without),
// tracing (with WithTracerProvider), metrics, load shedding (unless
// --overload-cpu is 0), logging, panic recovery, then the user's
// (WithUnaryInterceptor, WithStreamInterceptor). The load shedding
// interceptor admits the calls its tap (grpc.InTapHandle, see
// overload.Limiter.Tap) admitted when they arrived; a call the tap sheds
// never reaches the interceptors, so it is neither traced nor in the gRPC
// metrics or ORCA's counts: svckit_overload_shed_total counts it.
func (a *App) interceptors(load *loadReporter) ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	if load != nil {
		unary, stream = append(unary, load.unary()), append(stream, load.stream())
	}
	if t := tracing.New(a.opts.tracerProvider); t != nil {
		unary, stream = append(unary, t.UnaryServer()), append(stream, t.StreamServer())
	}
	unary, stream = append(unary, a.srvMetrics.UnaryServerInterceptor()), append(stream, a.srvMetrics.StreamServerInterceptor())
	if a.limiter != nil {
		unary, stream = append(unary, a.limiter.UnaryServerInterceptor()), append(stream, a.limiter.StreamServerInterceptor())
	}
	unary = append(unary, logUnary(a.log), recoverUnary(a.log))
	stream = append(stream, logStream(a.log), recoverStream(a.log))
	return append(unary, a.opts.unary...), append(stream, a.opts.stream...)
}

// errInternal is all a client learns of a panic.
var errInternal = status.Error(codes.Internal, "internal error")

// recoverUnary turns a handler panic into codes.Internal, logging the stack
// on the server only.
func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				log.ErrorContext(ctx, "handler panic", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				resp, err = nil, errInternal
			}
		}()
		return h(ctx, req)
	}
}

// recoverStream is recoverUnary for streams.
func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				log.ErrorContext(ss.Context(), "handler panic", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = errInternal
			}
		}()
		return h(srv, ss)
	}
}

// serverFault reports whether c says the server, not the caller, failed.
func serverFault(c codes.Code) bool {
	switch c {
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
		return true
	}
	return false
}

// logUnary logs each call: at debug level, or warn when the server failed.
func logUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		logCall(ctx, log, info.FullMethod, start, err)
		return resp, err
	}
}

// logStream is logUnary for streams.
func logStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		start := time.Now()
		err := h(srv, ss)
		logCall(ss.Context(), log, info.FullMethod, start, err)
		return err
	}
}

func logCall(ctx context.Context, log *slog.Logger, method string, start time.Time, err error) {
	code := status.Code(err)
	level := slog.LevelDebug
	if serverFault(code) {
		level = slog.LevelWarn
	}
	if !log.Enabled(ctx, level) {
		return
	}
	log.LogAttrs(ctx, level, "rpc", slog.String("method", method), slog.String("code", code.String()),
		slog.Duration("duration", time.Since(start)))
}
