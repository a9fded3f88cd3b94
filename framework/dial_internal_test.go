package framework

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/svckit/svckit/framework/lb"

	_ "github.com/svckit/svckit/examples/fileserver/proto/fileserver/v1" // a proto with idempotency levels
)

func TestServiceConfigRetriesIdempotentByContract(t *testing.T) {
	sc, err := serviceConfig(dialOptions{balancer: lb.P2CEWMA, idempotent: []string{"pkg.Svc", "/pkg.Other/Get"}})
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
		`"retryableStatusCodes":["UNAVAILABLE"]`,
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
	if _, err := serviceConfig(dialOptions{idempotent: []string{"/"}}); err == nil {
		t.Error("empty idempotent name: have nil error")
	}
}
