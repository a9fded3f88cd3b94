package framework_test

import (
	"fmt"
	"os"
	"path/filepath"
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

func TestEtcdPasswordFromFileNeverShown(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(f, []byte("s3cret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SVCKIT_ETCD_USER": "alpha", "SVCKIT_ETCD_PASSWORD_FILE": f}
	cfg, err := framework.ParseConfig(nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%+v %v", cfg, cfg); strings.Contains(s, "s3cret") {
		t.Fatalf("the password shows when the config is printed: %s", s)
	}
	env["SVCKIT_ETCD_PASSWORD_FILE"] = filepath.Join(t.TempDir(), "missing")
	if _, err := framework.ParseConfig(nil, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "SVCKIT_ETCD_PASSWORD_FILE") {
		t.Fatalf("missing password file: %v", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"--ttl 5s", "--listen 127.0.0.1:0 --admin 127.0.0.1:9090", "--etcd a:1,b:2", "--ttl", "--bogus", "--prefix x", "--tls-ca x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cfg, err := framework.ParseConfig(strings.Fields(line), func(string) string { return "" })
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("ParseConfig accepted %q, Validate refuses it: %v", line, verr)
			}
		}
	})
}
