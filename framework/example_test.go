package framework_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
)

// A service's main: configuration from flags and environment, handlers on
// App.GRPC, and Run. Here the context stops it; in a real main, SIGTERM does.
func ExampleApp() {
	etcd, err := etcdtest.New(etcdtest.Options{}) // stands in for the real etcd
	if err != nil {
		log.Fatal(err)
	}
	defer etcd.Close()

	// In main: framework.ParseConfig(os.Args[1:], nil).
	cfg, err := framework.ParseConfig([]string{"--etcd", etcd.Endpoint(0), "--ttl", "5s"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	app, err := framework.New("greeter",
		framework.WithConfig(cfg),
		framework.WithMetadata(naming.Metadata{Version: "1.0.0"}),
		framework.WithLogger(slog.New(slog.DiscardHandler)),
		framework.WithoutSignals(), // only for this example
	)
	if err != nil {
		log.Fatal(err)
	}
	// Register handlers here: pb.RegisterGreeterServer(app.GRPC(), svc).

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	<-app.Started()
	fmt.Println("ready:", app.Ready())
	cancel()
	fmt.Println("run:", <-done)
	// Output:
	// ready: true
	// run: <nil>
}
