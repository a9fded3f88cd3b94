package greeter_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	greeter "example.com/greeter"
	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A real etcd, the service on framework.App, and a client.Client built
// from the same Config.
func TestHelloThroughEtcd(t *testing.T) {
	etcd := etcdtest.Start(t)
	quiet := slog.New(slog.DiscardHandler)
	cfg := framework.DefaultConfig()
	cfg.Etcd = etcd.Endpoints()
	app, err := framework.New("greeter", framework.WithConfig(cfg), framework.WithoutSignals(),
		framework.WithPropagationDelay(0), framework.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	greeter.Register(app.GRPC(), greeter.MakeEndpoints(greeter.New()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-app.Started():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not started")
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer dcancel()
	cl, err := cfg.NewClient(client.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cc, err := cl.Dial(dctx, "greeter")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := greeter.NewClient(cc)
	if have, err := c.Hello(dctx, "svckit"); err != nil || have != "Hello, svckit" {
		t.Fatalf("Hello: have %q, %v", have, err)
	}
	if _, err := c.Hello(dctx, ""); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Hello with no name: have %v, want InvalidArgument", err)
	}
}
