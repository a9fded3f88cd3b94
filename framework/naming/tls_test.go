package naming_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
)

// TestPasswordInClearWarnsOnce: a client that would send its password
// without TLS to an etcd off this host logs one warning, without the
// password; on loopback, over TLS or without a password it logs none.
func TestPasswordInClearWarnsOnce(t *testing.T) {
	const pw = "warn-secret-pw"
	for _, tc := range []struct {
		name string
		cfg  naming.ClientConfig
		want int
	}{
		{"plaintext to a remote etcd", naming.ClientConfig{Endpoints: []string{"127.0.0.1:1", "192.0.2.1:2379"}, Username: "u", Password: pw}, 1},
		{"http:// drops TLS", naming.ClientConfig{Endpoints: []string{"http://192.0.2.1:2379"}, Username: "u", Password: pw, TLS: &tls.Config{}}, 1},
		{"loopback", naming.ClientConfig{Endpoints: []string{"127.0.0.1:1", "localhost:1", "[::1]:1"}, Username: "u", Password: pw}, 0},
		{"TLS config", naming.ClientConfig{Endpoints: []string{"192.0.2.1:2379"}, Username: "u", Password: pw, TLS: &tls.Config{}}, 0},
		{"https://", naming.ClientConfig{Endpoints: []string{"https://192.0.2.1:2379"}, Username: "u", Password: pw}, 0},
		{"no password", naming.ClientConfig{Endpoints: []string{"192.0.2.1:2379"}, Username: "u"}, 0},
	} {
		l, logs := newLogger(t)
		// Nothing listens: with a password, the client fails after the
		// dial timeout, having decided on the warning first.
		tc.cfg.Logger, tc.cfg.DialTimeout = l, 200*time.Millisecond
		if cli, err := naming.NewClient(tc.cfg); err == nil {
			_ = cli.Close()
		}
		if have := logs.Count("etcd password sent in plaintext"); have != tc.want {
			t.Errorf("%s: have %d warnings, want %d:\n%s", tc.name, have, tc.want, logs)
		}
		if strings.Contains(logs.String(), pw) {
			t.Errorf("%s: the password is in the logs:\n%s", tc.name, logs)
		}
	}
}

// TestPingNamesTheRefusedTLSHandshake: against an etcd that requires
// client certificates, a client with one pings; a client without one
// fails within the bound with one line that names etcd and the TLS
// refusal, not just "no answer".
func TestPingNamesTheRefusedTLSHandshake(t *testing.T) {
	c, certs := etcdtest.StartTLS(t)
	full, err := certs.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	l, _ := newLogger(t)
	ping := func(cfg *tls.Config) error {
		cli, err := naming.NewClient(naming.ClientConfig{Endpoints: c.URLs(), TLS: cfg, Logger: l, DialTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return naming.Ping(ctx, cli)
	}
	if err := ping(full); err != nil {
		t.Fatalf("ping with the client certificate: %v", err)
	}
	start := time.Now()
	err = ping(&tls.Config{RootCAs: full.RootCAs, MinVersion: tls.VersionTLS12})
	took := time.Since(start)
	if err == nil {
		t.Fatal("ping without a client certificate: have nil error")
	}
	msg := err.Error()
	t.Logf("without a certificate, after %s: %s", took.Round(time.Millisecond), msg)
	if !strings.Contains(msg, "etcd") || !strings.Contains(strings.ToLower(msg), "tls") || strings.Contains(msg, "\n") {
		t.Errorf("want one line naming etcd and tls; have %q", msg)
	}
	if took > 4*time.Second {
		t.Errorf("ping took %s, bound 3s", took)
	}
}

// TestPingNamesTLSToAPlaintextClient: a plaintext client of a TLS-only
// etcd is told that etcd speaks TLS, not only that the connection closed.
func TestPingNamesTLSToAPlaintextClient(t *testing.T) {
	c, _ := etcdtest.StartTLS(t)
	l, _ := newLogger(t)
	cli, err := naming.NewClient(naming.ClientConfig{Endpoints: c.Endpoints(), Logger: l, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err = naming.Ping(ctx, cli)
	if err == nil || !strings.Contains(err.Error(), "speaks TLS") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("plaintext ping of a TLS etcd: have %v, want one line saying it speaks TLS", err)
	}
	t.Log(err)
}
