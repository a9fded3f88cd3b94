package client

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"

	_ "github.com/svckit/svckit/examples/fileserver/proto/fileserver/v1" // a proto with idempotency levels
)

func TestServiceConfigRetriesIdempotentByContract(t *testing.T) {
	sc, err := serviceConfig(options{balancer: lb.P2CEWMA, idempotent: []string{"pkg.Svc", "/pkg.Other/Get"}}, idempotentByContract())
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(sc), &v); err != nil {
		t.Fatalf("service config is not JSON: %v", err)
	}
	for _, want := range []string{
		`{"service":"grpc.health.v1.Health","method":"Check"}`,
		`{"service":"fileserver.v1.FileService","method":"List"}`,
		`{"service":"fileserver.v1.FileService","method":"Stat"}`,
		`{"service":"fileserver.v1.FileService","method":"Delete"}`,
		`{"service":"pkg.Svc"}`,
		`{"service":"pkg.Other","method":"Get"}`,
		`"retryableStatusCodes":["UNAVAILABLE","RESOURCE_EXHAUSTED"]`,
		`"retryThrottling":{"maxTokens":100,"tokenRatio":0.1}`,
		`"svckit_p2c_ewma"`,
	} {
		if !strings.Contains(sc, want) {
			t.Errorf("service config lacks %s:\n%s", want, sc)
		}
	}
	for _, not := range []string{`"method":"Upload"`, `"method":"Download"`} {
		if strings.Contains(sc, not) {
			t.Errorf("service config retries %s, which its proto does not declare idempotent", not)
		}
	}
	if _, err := serviceConfig(options{idempotent: []string{"/"}}, nil); err == nil {
		t.Error("empty idempotent name: have nil error")
	}
}

// TestConnsOfOneClientShareOneWatch: two conns to one service from one
// Client are two resolvers on one etcd watch.
func TestConnsOfOneClientShareOneWatch(t *testing.T) {
	c := etcdtest.Start(t)
	cl, err := New(naming.ClientConfig{Endpoints: c.Endpoints()}, WithLogger(slog.New(slog.DiscardHandler)), WithoutWait())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for range 2 {
		cc, err := cl.Dial(context.Background(), "shared")
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		cc.Connect()
	}
	poll.Until(t, 10*time.Second, "two resolvers on one watch", func() bool {
		st, ok := cl.builder.Status("services/shared")
		return ok && st.Resolvers == 2
	})
}
