package client_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/framework/naming"
)

// A service registers itself in etcd with framework.App; a Client built
// from the same Config dials it by name and calls its health service.
func Example() {
	etcd, err := etcdtest.New(etcdtest.Options{}) // a real etcd, in-process
	if err != nil {
		log.Fatal(err)
	}
	defer etcd.Close()
	quiet := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cfg := framework.DefaultConfig()
	cfg.Etcd = etcd.Endpoints()
	app, err := framework.New("greeter", framework.WithConfig(cfg), framework.WithoutSignals(),
		framework.WithPropagationDelay(0), framework.WithLogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	defer func() { <-done }()
	defer cancel() // stop the App after the client is closed
	<-app.Started()

	c, err := cfg.NewClient(client.WithLogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	cc, err := c.Dial(ctx, "greeter") // waits for a ready instance
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.GetStatus())
	// Output: SERVING
}

// Dial is the one-call form: its etcd client lives as long as the conn.
// It checks the service name before it creates the etcd client.
func ExampleDial() {
	etcd := naming.ClientConfig{Endpoints: []string{"127.0.0.1:2379"}}
	_, err := client.Dial(context.Background(), etcd, "file/server")
	fmt.Println(err)
	// Output: client: dial: naming: service name "file/server": character '/' not allowed: invalid
}

// Outlier ejection is on by default (lb.DefaultOutlierDetection); a Client
// may tune it for its every Dial, and a Dial may turn it off.
func ExampleWithOutlierDetection() {
	etcd := naming.ClientConfig{Endpoints: []string{"127.0.0.1:2379"}}
	od := lb.DefaultOutlierDetection()
	od.FailurePercentageEjection.Threshold = 50 // eject only instances failing half their calls
	od.BaseEjectionTime = 10 * time.Second
	c, err := client.New(etcd, client.WithOutlierDetection(od)) // does not wait for etcd
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	od.MaxEjectionPercent = 150
	_, err = client.New(etcd, client.WithOutlierDetection(od))
	fmt.Println(err)
	// Output: client: outlier detection: maxEjectionPercent 150: must be 0 to 100
}
