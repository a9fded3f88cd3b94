// Package testsvc is a small gRPC service for svckit's tests and benchmarks:
// Sleep holds a call open, Panic and PanicStream panic in the handler. It is
// written against well-known protobuf types so that it needs no generated
// code.
package testsvc

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// ServiceName is the full name of the test service.
const ServiceName = "svckit.test.Test"

// Methods of the test service.
const (
	SleepMethod       = "/" + ServiceName + "/Sleep"
	PanicMethod       = "/" + ServiceName + "/Panic"
	PanicStreamMethod = "/" + ServiceName + "/PanicStream"
)

type server struct{}

// Register registers the test service on s.
func Register(s grpc.ServiceRegistrar) { s.RegisterService(&desc, server{}) }

// desc is the service's gRPC description, as generated code declares one:
// part of gRPC registration, read-only.
var desc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Sleep", Handler: func(_ any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			req := new(durationpb.Duration)
			if err := dec(req); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, r any) (any, error) {
				t := time.NewTimer(r.(*durationpb.Duration).AsDuration())
				defer t.Stop()
				select {
				case <-t.C:
					return &emptypb.Empty{}, nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			if in == nil {
				return h(ctx, req)
			}
			return in(ctx, req, &grpc.UnaryServerInfo{FullMethod: SleepMethod}, h)
		}},
		{MethodName: "Panic", Handler: func(_ any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			req := new(emptypb.Empty)
			if err := dec(req); err != nil {
				return nil, err
			}
			h := func(context.Context, any) (any, error) { panic("test panic: secret path /etc/shadow") }
			if in == nil {
				return h(ctx, req)
			}
			return in(ctx, req, &grpc.UnaryServerInfo{FullMethod: PanicMethod}, h)
		}},
	},
	Streams: []grpc.StreamDesc{{
		StreamName:    "PanicStream",
		ServerStreams: true,
		Handler:       func(any, grpc.ServerStream) error { panic("test stream panic") },
	}},
}

// Sleep calls Sleep for d on cc.
func Sleep(ctx context.Context, cc grpc.ClientConnInterface, d time.Duration, opts ...grpc.CallOption) error {
	return cc.Invoke(ctx, SleepMethod, durationpb.New(d), new(emptypb.Empty), opts...)
}

// Panic calls Panic on cc.
func Panic(ctx context.Context, cc grpc.ClientConnInterface) error {
	return cc.Invoke(ctx, PanicMethod, new(emptypb.Empty), new(emptypb.Empty))
}

// PanicStream opens PanicStream on cc and returns the stream's error.
func PanicStream(ctx context.Context, cc grpc.ClientConnInterface) error {
	s, err := cc.NewStream(ctx, &desc.Streams[0], PanicStreamMethod)
	if err != nil {
		return err
	}
	if err := s.SendMsg(new(emptypb.Empty)); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	return s.RecvMsg(new(emptypb.Empty))
}

// Serve starts a real gRPC server on 127.0.0.1 with the standard health
// service and the test service, stopped when tb ends, and returns its
// address.
func Serve(tb testing.TB, opts ...grpc.ServerOption) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testsvc: listen: %v", err)
	}
	s := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	Register(s)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	tb.Cleanup(func() { s.Stop(); <-done })
	return lis.Addr().String()
}
