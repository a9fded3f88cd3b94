package framework_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svckit/svckit/framework"
)

func TestParseConfigPrecedence(t *testing.T) {
	env := map[string]string{
		"SVCKIT_ETCD_ENDPOINTS": "10.0.0.1:2379, 10.0.0.2:2379",
		"SVCKIT_TTL":            "20s",
		"SVCKIT_LISTEN":         "127.0.0.1:7000",
	}
	have, err := framework.ParseConfig([]string{"--ttl", "30s", "--admin", "127.0.0.1:0"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.1:2379", "10.0.0.2:2379"}; !slices.Equal(have.Etcd, want) {
		t.Errorf("etcd from env: have %v, want %v", have.Etcd, want)
	}
	if have.TTL != 30*time.Second {
		t.Errorf("ttl: flag must win over env: have %s", have.TTL)
	}
	if have.Listen != "127.0.0.1:7000" {
		t.Errorf("listen from env: have %s", have.Listen)
	}
	if have.ShutdownTimeout != 15*time.Second || have.Prefix != "services/" {
		t.Errorf("defaults: have %+v", have)
	}
}

func TestParseConfigRejectsBadValuesNamingThem(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--ttl", "abc"}, nil, "-ttl"},
		{[]string{"--ttl", "500ms"}, nil, "--ttl"},
		{[]string{"--shutdown-timeout", "0s"}, nil, "--shutdown-timeout"},
		{[]string{"--listen", "nope"}, nil, "--listen"},
		{[]string{"--advertise", "0.0.0.0:80"}, nil, "--advertise"},
		{[]string{"--prefix", "services"}, nil, "--prefix"},
		{[]string{"--etcd", ""}, nil, "--etcd"},
		{[]string{"--bogus"}, nil, "bogus"},
		{nil, map[string]string{"SVCKIT_TTL": "ten"}, "SVCKIT_TTL"},
	} {
		_, err := framework.ParseConfig(tc.args, func(k string) string { return tc.env[k] })
		if err == nil {
			t.Errorf("%v %v: have nil error", tc.args, tc.env)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %q does not name %s", tc.args, tc.env, err, tc.want)
		}
		if strings.Contains(err.Error(), "\n") && tc.want != "--etcd" {
			t.Errorf("%v: error spans lines: %q", tc.args, err)
		}
	}
}
