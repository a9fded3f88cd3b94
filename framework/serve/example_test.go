package serve_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/svckit/svckit/framework/serve"
)

// A server with svckit's limits and keepalive, serving until it is stopped
// within a bound.
func Example() {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	limits := serve.DefaultLimits()
	limits.MaxRecvMsgSize = 1 << 20 // this service takes 1 MiB at most
	if err := limits.Validate(); err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(append(limits.ServerOptions(), serve.Keepalive()...)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("health:", resp.GetStatus())

	// On shutdown: the calls in flight get 5s, then are cut.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println("stop:", serve.Stop(ctx, srv))
	fmt.Println("serve:", <-served)
	// Output:
	// health: SERVING
	// stop: <nil>
	// serve: <nil>
}
