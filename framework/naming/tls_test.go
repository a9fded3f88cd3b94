package naming_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
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
	// The client sees etcd's alert or, writing when etcd closes, a broken
	// pipe; try a few times to meet both.
	for i := range 5 {
		start := time.Now()
		err = ping(&tls.Config{RootCAs: full.RootCAs, MinVersion: tls.VersionTLS12})
		took := time.Since(start)
		if err == nil {
			t.Fatalf("ping %d without a client certificate: have nil error", i)
		}
		msg := err.Error()
		t.Logf("without a certificate, after %s: %s", took.Round(time.Millisecond), msg)
		if !strings.Contains(msg, "etcd") || !strings.Contains(msg, "requires a TLS client certificate") || strings.Contains(msg, "\n") {
			t.Errorf("ping %d: want one line naming etcd and the TLS client certificate it requires; have %q", i, msg)
		}
		if took > 4*time.Second {
			t.Errorf("ping %d took %s, bound 3s", i, took)
		}
	}
}

// TestOptionalClientCertificateIsNotRequired: a TLS front end that asks
// for a client certificate but does not require one (as Envoy, HAProxy and
// nginx do with optional client auth) accepts a client without one, and
// one with one.
func TestOptionalClientCertificateIsNotRequired(t *testing.T) {
	c := etcdtest.Start(t)
	certs, err := etcdtest.GenerateCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	full, err := certs.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	front := startTLSFront(t, certs, c.Endpoint(0))
	l, _ := newLogger(t)
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"without a client certificate", &tls.Config{RootCAs: full.RootCAs, MinVersion: tls.VersionTLS12}},
		{"with a client certificate", full},
	} {
		cli, err := naming.NewClient(naming.ClientConfig{Endpoints: []string{"https://" + front}, TLS: tc.cfg, Logger: l, DialTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := naming.Ping(ctx, cli); err != nil {
			t.Errorf("%s: ping through the optional-client-auth front: %v", tc.name, err)
		} else if _, err := cli.Put(ctx, "optional/"+tc.name, "x"); err != nil {
			t.Errorf("%s: put: %v", tc.name, err)
		}
		cancel()
		_ = cli.Close()
	}
}

// startTLSFront starts a TLS-terminating TCP proxy to the plaintext etcd
// at target, with the server certificate of certs, that asks for a client
// certificate signed by the CA of certs but does not require one
// (tls.VerifyClientCertIfGiven). It is closed when t ends.
func startTLSFront(t *testing.T, certs etcdtest.Certs, target string) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certs.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    ca.RootCAs,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		NextProtos:   []string{"h2"},
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	return serveFront(t, lis, target, nil)
}

// serveFront forwards each connection accepted on lis to target, except
// those accepted while reset() holds (reset may be nil), which it resets.
// It stops when t ends, and returns lis's address.
func serveFront(t *testing.T, lis net.Listener, target string, reset func() bool) string {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := lis.Accept()
			if err != nil {
				return // closed
			}
			if reset != nil && reset() {
				if tc, ok := in.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
				_ = in.Close()
				continue
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Add(2)
			for _, p := range [][2]net.Conn{{in, out}, {out, in}} {
				go func() {
					defer wg.Done()
					_, _ = io.Copy(p[0], p[1])
					_ = p[0].Close()
					_ = p[1].Close()
				}()
			}
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return lis.Addr().String()
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
