package framework_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/internal/testsvc"
)

// TestConfigNewClientDialsUnderItsPrefix: a Client from a Config reaches
// etcd as the Config says and dials under its prefix; an option replaces
// the prefix; an invalid Config is refused.
func TestConfigNewClientDialsUnderItsPrefix(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	quiet := slog.New(slog.DiscardHandler)
	cfg := framework.DefaultConfig()
	cfg.Etcd = c.Endpoints()
	cfg.Prefix = "team/"
	app, err := framework.New("prefixed", framework.WithConfig(cfg), framework.WithoutSignals(),
		framework.WithPropagationDelay(0), framework.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	testsvc.Register(app.GRPC())
	startApp(t, app)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := newClient(t, cfg, client.WithLogger(quiet))
	cc, err := cl.Dial(ctx, "prefixed")
	if err != nil {
		t.Fatalf("dial under the Config's prefix: %v", err)
	}
	defer cc.Close()
	if err := testsvc.Sleep(ctx, cc, 0); err != nil {
		t.Fatalf("call: %v", err)
	}
	_, err = cl.Dial(ctx, "prefixed", client.WithPrefix("services/"), client.WithTimeout(300*time.Millisecond))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("dial under another prefix: have %v, want Unavailable", err)
	}

	bad := cfg
	bad.EtcdCert = "client.pem" // without its key
	if cl, err := bad.NewClient(); err == nil || !strings.HasPrefix(err.Error(), "framework: client: ") {
		if cl != nil {
			_ = cl.Close()
		}
		t.Errorf("NewClient of an invalid Config: have %v, want a framework: client: error", err)
	}
}
