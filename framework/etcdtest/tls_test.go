package etcdtest_test

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/svckit/svckit/framework/etcdtest"
)

// TestTLSOnlyRequiresClientCertificates: a StartTLS member serves the
// client with the generated certificate and refuses, within the bound, a
// client without one and a plaintext client.
func TestTLSOnlyRequiresClientCertificates(t *testing.T) {
	c, certs := etcdtest.StartTLS(t)
	if u := c.URLs()[0]; u != "https://"+c.Endpoint(0) {
		t.Fatalf("URLs: have %s, want https://%s", u, c.Endpoint(0))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Client(t).Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put with the client certificate: %v", err)
	}

	full, err := certs.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	noCert := &tls.Config{RootCAs: full.RootCAs, MinVersion: tls.VersionTLS12}
	for _, tc := range []struct {
		name string
		cfg  clientv3.Config
	}{
		{"no client certificate", clientv3.Config{Endpoints: c.URLs(), TLS: noCert}},
		{"plaintext", clientv3.Config{Endpoints: c.Endpoints()}},
	} {
		tc.cfg.DialTimeout, tc.cfg.Logger = time.Second, zap.NewNop()
		cli, err := clientv3.New(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		gctx, gcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = cli.Get(gctx, "k")
		gcancel()
		_ = cli.Close()
		if err == nil {
			t.Errorf("%s: have nil error, want a refusal", tc.name)
		} else if !errors.Is(err, context.DeadlineExceeded) {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}

func TestGenerateCertsReplacesEarlierFiles(t *testing.T) {
	dir := t.TempDir()
	a, err := etcdtest.GenerateCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	first, err := tls.LoadX509KeyPair(a.ServerCert, a.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	b, err := etcdtest.GenerateCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	second, err := tls.LoadX509KeyPair(b.ServerCert, b.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	if string(first.Certificate[0]) == string(second.Certificate[0]) {
		t.Fatal("the second run kept the first server certificate")
	}
	if _, err := b.ClientTLS(); err != nil {
		t.Fatalf("client TLS of the second run: %v", err)
	}
}
