package framework_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/etcdtest"
)

// pki makes certificates in a test's temporary directory.
type pki struct {
	t   *testing.T
	dir string
}

type issued struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// Files of the certificate and key.
	certFile, keyFile string
}

var serial int64 = 1

func (p pki) issue(name string, parent *issued, tmpl x509.Certificate) *issued {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	tmpl.Subject = pkix.Name{CommonName: name}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(time.Hour)
	}
	signer, signerKey := &tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		p.t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalECPrivateKey(key)
	out := &issued{cert: cert, key: key, certFile: filepath.Join(p.dir, name+".crt"), keyFile: filepath.Join(p.dir, name+".key")}
	if err := os.WriteFile(out.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(out.keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return out
}

func (p pki) ca(name string) *issued {
	return p.issue(name, nil, x509.Certificate{IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign})
}

func (p pki) leaf(name string, ca *issued, usage x509.ExtKeyUsage, ips []net.IP, dns []string, notAfter time.Time) *issued {
	return p.issue(name, ca, x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		IPAddresses: ips, DNSNames: dns, NotAfter: notAfter})
}

func TestMutualTLS(t *testing.T) {
	p := pki{t: t, dir: t.TempDir()}
	ca, otherCA := p.ca("ca"), p.ca("other-ca")
	local := []net.IP{net.ParseIP("127.0.0.1")}
	srvCert := p.leaf("server", ca, x509.ExtKeyUsageServerAuth, local, nil, time.Time{})
	wrongName := p.leaf("server-wrong-name", ca, x509.ExtKeyUsageServerAuth, nil, []string{"elsewhere.example"}, time.Time{})
	good := p.leaf("client", ca, x509.ExtKeyUsageClientAuth, nil, nil, time.Time{})
	foreign := p.leaf("client-other-ca", otherCA, x509.ExtKeyUsageClientAuth, nil, nil, time.Time{})
	expired := p.leaf("client-expired", ca, x509.ExtKeyUsageClientAuth, nil, nil, time.Now().Add(-time.Minute))

	etcd := etcdtest.Start(t)
	quiet := slog.New(slog.DiscardHandler)
	start := func(server *issued) string {
		cfg := framework.DefaultConfig()
		cfg.Etcd = etcd.Endpoints()
		cfg.TLSCert, cfg.TLSKey, cfg.TLSCA = server.certFile, server.keyFile, ca.certFile
		app, err := framework.New("secure", framework.WithConfig(cfg), framework.WithoutSignals(),
			framework.WithPropagationDelay(0), framework.WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		startApp(t, app)
		return app.Addr()
	}
	addr, wrongAddr := start(srvCert), start(wrongName)

	clientCreds := func(c *issued) credentials.TransportCredentials {
		t.Helper()
		cf, kf := "", ""
		if c != nil {
			cf, kf = c.certFile, c.keyFile
		}
		creds, err := framework.ClientTLS(ca.certFile, cf, kf, "")
		if err != nil {
			t.Fatal(err)
		}
		return creds
	}
	for _, tc := range []struct {
		name  string
		addr  string
		creds credentials.TransportCredentials
		ok    bool
	}{
		{"valid client certificate", addr, clientCreds(good), true},
		{"plaintext", addr, insecure.NewCredentials(), false},
		{"no client certificate", addr, clientCreds(nil), false},
		{"certificate of another CA", addr, clientCreds(foreign), false},
		{"expired certificate", addr, clientCreds(expired), false},
		{"server certificate for another name", wrongAddr, clientCreds(good), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, err := grpc.NewClient("passthrough:///"+tc.addr, grpc.WithTransportCredentials(tc.creds))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
			if (err == nil) != tc.ok {
				t.Fatalf("have %v, want ok=%t", err, tc.ok)
			}
		})
	}
}

func TestTLSConfigurationErrors(t *testing.T) {
	cfg := framework.DefaultConfig()
	cfg.TLSCert = "/nonexistent.crt"
	if err := cfg.Validate(); err == nil {
		t.Error("--tls-cert without --tls-key: have nil error")
	}
	cfg.TLSKey = "/nonexistent.key"
	if _, err := framework.New("svc", framework.WithConfig(cfg)); err == nil {
		t.Error("missing certificate files: have nil error")
	}
	if _, err := framework.ClientTLS("", "", "", ""); err == nil {
		t.Error("client TLS without CA: have nil error")
	}
}
