package xds_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/xds"
)

// Two instances of a service register in etcd; the xDS server's first
// snapshot serves both, each with its zone and weight. A gRPC client with
// xDS support would dial xds:///greeter against the server's address
// (Serve).
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

	for _, in := range []naming.Instance{
		{Service: "greeter", Addr: "127.0.0.1:7002", Metadata: naming.Metadata{Zone: "eu-2"}},
		{Service: "greeter", Addr: "127.0.0.1:7001", Metadata: naming.Metadata{Zone: "eu-1", Weight: 3}},
	} {
		reg, err := naming.NewRegistrar(cli, in, naming.WithLogger(quiet))
		if err != nil {
			log.Fatal(err)
		}
		if err := reg.Register(ctx); err != nil {
			log.Fatal(err)
		}
		defer reg.Deregister(context.Background())
	}

	srv, err := xds.New(naming.NewBuilder(cli, naming.WithResolverLogger(quiet)), xds.WithLogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(runCtx) }()
	select {
	case <-srv.Ready():
	case <-ctx.Done():
		log.Fatal("no snapshot")
	}
	services := srv.Services()
	for _, name := range slices.Sorted(maps.Keys(services)) {
		for _, in := range services[name] {
			fmt.Println(name, in.Addr, in.Zone, "weight", in.Weight)
		}
	}
	stop()
	if err := <-ran; err != nil {
		log.Fatal(err)
	}
	// Output:
	// greeter 127.0.0.1:7001 eu-1 weight 3
	// greeter 127.0.0.1:7002 eu-2 weight 1
}
