package kit_test

import (
	"net"
	"testing"

	"github.com/go-kit/kit/endpoint"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/svckit/svckit/framework/kit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startEcho serves e as Echo on a gRPC server on 127.0.0.1 and returns a
// connection to it; both close at cleanup.
func startEcho(t *testing.T, e endpoint.Endpoint) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := grpc.NewServer()
	srv.RegisterService(&echoDesc, kit.ServerHandler(e, fromMessage, toMessage))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// echoClient returns the client endpoint of Echo on cc.
func echoClient(cc *grpc.ClientConn) endpoint.Endpoint {
	return kit.ClientEndpoint(cc, echoService, "Echo", toMessage, fromMessage, new(wrapperspb.StringValue))
}
