package naming_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
)

// A server registers itself under a lease; a client resolves the service
// name through etcd and calls it.
func Example() {
	etcd, err := etcdtest.New(etcdtest.Options{}) // a real etcd, in-process
	if err != nil {
		log.Fatal(err)
	}
	defer etcd.Close()
	quiet := slog.New(slog.DiscardHandler)
	cli, err := naming.NewClient(naming.ClientConfig{Endpoints: etcd.Endpoints(), Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Server side: serve, then register.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	reg, err := naming.NewRegistrar(cli, naming.Instance{
		Service:  "greeter",
		Addr:     lis.Addr().String(),
		Metadata: naming.Metadata{Version: "1.0.0", Zone: "eu-1", Weight: 2},
	}, naming.WithTTL(10*time.Second), naming.WithLogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	if err := reg.Register(ctx); err != nil {
		log.Fatal(err)
	}
	defer reg.Deregister(context.Background())

	// Client side: resolve "greeter" through etcd.
	cc, err := grpc.NewClient("etcd:///services/greeter",
		grpc.WithResolvers(naming.NewBuilder(cli, naming.WithResolverLogger(quiet))),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("greeter:", resp.GetStatus())
	fmt.Println("record state:", reg.Status().State)
	// Output:
	// greeter: SERVING
	// record state: registered
}
