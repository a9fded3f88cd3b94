package framework_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/framework/etcdtest"
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
		{[]string{"--overload-cpu", "high"}, nil, "-overload-cpu"},
		{[]string{"--overload-cpu", "1.5"}, nil, "--overload-cpu"},
		{[]string{"--overload-cpu", "-0.1"}, nil, "--overload-cpu"},
		{[]string{"--overload-cpu", "NaN"}, nil, "--overload-cpu"},
		{nil, map[string]string{"SVCKIT_OVERLOAD_CPU": "80%"}, "SVCKIT_OVERLOAD_CPU"},
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

func TestEtcdTLSFromFlagsAndEnv(t *testing.T) {
	certs, err := etcdtest.GenerateCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SVCKIT_ETCD_CA": certs.CA, "SVCKIT_ETCD_CERT": "/from/env.pem"}
	cfg, err := framework.ParseConfig([]string{"--etcd-cert", certs.ClientCert, "--etcd-key", certs.ClientKey}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.EtcdCA != certs.CA || cfg.EtcdCert != certs.ClientCert || cfg.EtcdKey != certs.ClientKey {
		t.Fatalf("flags over env: have ca %q cert %q key %q", cfg.EtcdCA, cfg.EtcdCert, cfg.EtcdKey)
	}
	cc, err := cfg.EtcdClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cc.TLS == nil || cc.TLS.RootCAs == nil || len(cc.TLS.Certificates) != 1 {
		t.Fatalf("TLS: have %+v", cc.TLS)
	}

	for _, tc := range []struct {
		name    string
		etcd    string
		wantTLS bool
	}{
		{"host:port, no files: plaintext", "10.0.0.1:2379", false},
		{"http://: plaintext", "http://10.0.0.1:2379", false},
		{"https:// without a CA: the system roots", "https://10.0.0.1:2379", true},
	} {
		cfg, err := framework.ParseConfig([]string{"--etcd", tc.etcd}, func(string) string { return "" })
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		cc, err := cfg.EtcdClientConfig()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if have := cc.TLS != nil; have != tc.wantTLS {
			t.Errorf("%s: have TLS %t, want %t", tc.name, have, tc.wantTLS)
		}
		if cc.TLS != nil && cc.TLS.RootCAs != nil {
			t.Errorf("%s: RootCAs set, want the system roots", tc.name)
		}
	}
}

// TestEtcdTLSRefusals: each bad TLS setting is one line naming its flag,
// from ParseConfig (Validate) and from EtcdClientConfig alike.
func TestEtcdTLSRefusals(t *testing.T) {
	dir := t.TempDir()
	certs, err := etcdtest.GenerateCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--etcd-cert", certs.ClientCert}, "--etcd-cert and --etcd-key go together"},
		{[]string{"--etcd-key", certs.ClientKey}, "--etcd-cert and --etcd-key go together"},
		{[]string{"--etcd-ca", filepath.Join(dir, "missing.pem")}, "--etcd-ca " + filepath.Join(dir, "missing.pem") + ": open"},
		{[]string{"--etcd-ca", notPEM}, "--etcd-ca " + notPEM + ": no PEM certificate"},
		{[]string{"--etcd-cert", certs.ClientCert, "--etcd-key", certs.ServerKey}, "--etcd-cert " + certs.ClientCert},
		{[]string{"--etcd-cert", notPEM, "--etcd-key", certs.ClientKey}, "--etcd-cert " + notPEM},
		{[]string{"--etcd", "http://10.0.0.1:2379", "--etcd-ca", certs.CA}, "http:// is plaintext"},
		{[]string{"--etcd", "http://10.0.0.1:2379,https://10.0.0.2:2379"}, "http:// is plaintext"},
		{[]string{"--etcd", "ftp://10.0.0.1:2379"}, "scheme ftp"},
		{[]string{"--etcd", "https://10.0.0.1"}, `--etcd "https://10.0.0.1"`},
	} {
		_, err := framework.ParseConfig(tc.args, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseConfig %v: have %v, want one line with %q", tc.args, err, tc.want)
		}
		cfg := framework.DefaultConfig()
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		cfg.RegisterEtcdFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.EtcdClientConfig(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("EtcdClientConfig %v: have %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestRegisterEtcdFlagsDefinesOnlyTheEtcdClient(t *testing.T) {
	cfg := framework.DefaultConfig()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cfg.RegisterEtcdFlags(fs)
	var have []string
	fs.VisitAll(func(f *flag.Flag) { have = append(have, f.Name) })
	want := []string{"etcd", "etcd-ca", "etcd-cert", "etcd-key", "etcd-user", "prefix"}
	if !slices.Equal(have, want) {
		t.Fatalf("have %v, want %v", have, want)
	}
}

func TestParseFlagsOneLineOrHelp(t *testing.T) {
	newFS := func() *flag.FlagSet {
		fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
		cfg := framework.DefaultConfig()
		cfg.RegisterFlags(fs)
		return fs
	}
	for _, args := range [][]string{{"-x"}, {"--ttl", "abc"}, {"--ttl"}} {
		var out strings.Builder
		fs := newFS()
		err := cli.Parse(fs, args, &out)
		var ue *cli.UsageError
		if !errors.As(err, &ue) || ue.Cmd != "cmd" {
			t.Errorf("%v: have %v, want a *UsageError of cmd", args, err)
			continue
		}
		if errors.Unwrap(err) == nil || strings.Contains(err.Error(), "\n") || out.Len() != 0 {
			t.Errorf("%v: want one line and no output; have %q, output %q", args, err, out.String())
		}
		if errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v: a bad flag is not a help request", args)
		}
	}
	for _, arg := range []string{"-h", "--help"} {
		var out strings.Builder
		err := cli.Parse(newFS(), []string{arg}, &out)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s: have %v, want flag.ErrHelp", arg, err)
		}
		if !strings.Contains(out.String(), "-etcd-ca") {
			t.Errorf("%s: usage on stdout lacks -etcd-ca:\n%s", arg, out.String())
		}
	}
}
