package kit_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/go-kit/kit/endpoint"
	grpctransport "github.com/go-kit/kit/transport/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/svckit/svckit/framework/kit"
)

// echoService has one method, Echo, from StringValue to StringValue. Its
// binding is written by hand, as generated code would be.
const echoService = "svckit.kit.test.Echo"

var echoDesc = grpc.ServiceDesc{
	ServiceName: echoService,
	HandlerType: (*grpctransport.Handler)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Echo", Handler: echoHandler}},
}

// echoHandler is the gRPC method: it decodes the message, lets the kit
// handler run the endpoint, and converts its error at this edge.
func echoHandler(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
	req := new(wrapperspb.StringValue)
	if err := dec(req); err != nil {
		return nil, err
	}
	h := func(ctx context.Context, req any) (any, error) {
		_, resp, err := srv.(grpctransport.Handler).ServeGRPC(ctx, req)
		if err != nil {
			return nil, kit.GRPCStatus(err)
		}
		return resp, nil
	}
	if in == nil {
		return h(ctx, req)
	}
	return in(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + echoService + "/Echo"}, h)
}

// The endpoints take and return a string; these convert it to and from the
// message, on both sides.
func fromMessage(_ context.Context, m any) (any, error) {
	return m.(*wrapperspb.StringValue).GetValue(), nil
}

func toMessage(_ context.Context, s any) (any, error) {
	return wrapperspb.String(s.(string)), nil
}

// An endpoint served over gRPC and called through a client endpoint, each
// side with its middleware. The server's limiter lets two calls through and
// refuses the third, which the client sees as ResourceExhausted.
func Example() {
	// Server: endpoint, middleware, binding.
	upper := func(_ context.Context, req any) (any, error) { return strings.ToUpper(req.(string)), nil }
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "duration" {
				return slog.Attr{} // vary from run to run
			}
			return a
		},
	}))
	e := endpoint.Chain(
		kit.Logging(logger, "Echo"),
		kit.RateLimit(0, 2), // no refill: two calls in all
	)(upper)
	srv := grpc.NewServer()
	srv.RegisterService(&echoDesc, kit.ServerHandler(e, fromMessage, toMessage))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()

	// Client: connection, client endpoint, middleware.
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	echo := endpoint.Chain(
		kit.CircuitBreaker("echo"),
		kit.Timeout(5*time.Second),
	)(kit.ClientEndpoint(cc, echoService, "Echo", toMessage, fromMessage, new(wrapperspb.StringValue)))

	for _, s := range []string{"a", "b", "c"} {
		resp, err := echo(context.Background(), s)
		fmt.Println(resp, status.Code(err))
	}
	// Output:
	// level=DEBUG msg=call endpoint=Echo
	// A OK
	// level=DEBUG msg=call endpoint=Echo
	// B OK
	// level=WARN msg="call failed" endpoint=Echo err="rate limit exceeded"
	// <nil> ResourceExhausted
}
