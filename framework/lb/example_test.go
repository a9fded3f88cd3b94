package lb_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/svckit/svckit/framework/lb"
)

// A client picks a policy by name in its service config. Here two
// instances weighted 3 and 1 (the "svckit.weight" attribute package naming
// sets from each record) share 400 calls 300 to 100.
func Example() {
	weights := map[string]uint32{}
	var eps []resolver.Endpoint
	for _, w := range []uint32{3, 1} {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		srv := grpc.NewServer()
		healthpb.RegisterHealthServer(srv, health.NewServer())
		go func() { _ = srv.Serve(lis) }()
		defer srv.Stop()
		weights[lis.Addr().String()] = w
		eps = append(eps, resolver.Endpoint{
			Addresses:  []resolver.Address{{Addr: lis.Addr().String()}},
			Attributes: attributes.New("svckit.weight", w),
		})
	}
	r := manual.NewBuilderWithScheme("example")
	r.InitialState(resolver.State{Endpoints: eps})
	cc, err := grpc.NewClient("example:///greeter",
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"`+lb.WeightedRoundRobin+`":{}}]}`))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call := func() string {
		var p peer.Peer
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
		if err != nil {
			log.Fatal(err)
		}
		return p.Addr.String()
	}
	// Until both instances are connected, the ready one takes every call.
	for seen := map[string]bool{}; len(seen) < len(eps); {
		seen[call()] = true
	}
	calls := map[uint32]int{}
	for range 400 {
		calls[weights[call()]]++
	}
	fmt.Println("weight 3:", calls[3], "calls")
	fmt.Println("weight 1:", calls[1], "calls")
	// Output:
	// weight 3: 300 calls
	// weight 1: 100 calls
}
