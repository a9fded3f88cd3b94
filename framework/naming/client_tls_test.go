package naming_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
)

// TestPingDoesNotBlameACertificateItHas: a client with the right
// certificate, whose connections to a mutual-TLS etcd are reset until its
// Ping gives up (as while etcd restarts), is told the reset, not that etcd
// requires a certificate, and the error does not wrap naming.ErrTLS: a
// command waits for such an etcd instead of exiting.
func TestPingDoesNotBlameACertificateItHas(t *testing.T) {
	c, certs := etcdtest.StartTLS(t)
	full, err := certs.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	// Reset the client's first connection, then forward to etcd, which
	// refuses a probe without a certificate. The client's RPC fails fast
	// on the reset.
	var (
		mu     sync.Mutex
		resets int
	)
	front := startTCPFront(t, c.Endpoint(0), func() bool {
		mu.Lock()
		defer mu.Unlock()
		resets++
		return resets == 1
	})
	l, _ := newLogger(t)
	cli, err := naming.NewClient(naming.ClientConfig{Endpoints: []string{"https://" + front}, TLS: full, Logger: l, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err = naming.Ping(ctx, cli)
	t.Logf("ping with a certificate through resets: %v", err)
	if err == nil {
		t.Fatal("ping through a front that resets the first connection: have nil error")
	}
	if strings.Contains(err.Error(), "requires a TLS client certificate") || errors.Is(err, naming.ErrTLS) {
		t.Errorf("a client with a certificate is told it lacks one (errors.Is ErrTLS %t): %v", errors.Is(err, naming.ErrTLS), err)
	}
	// Once the front forwards, the client pings after its reconnect
	// backoff.
	poll.Until(t, 10*time.Second, "ping after the reset", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return naming.Ping(ctx, cli) == nil
	})
}

// TestPingNamesTheCertificateAlertToAHostPortClient: a client that dials a
// mutual-TLS etcd at host:port with a TLS config but no certificate is
// told that etcd requires one (TLS 1.3 reports the alert with the server
// preface), never that etcd speaks TLS and it does not; the error wraps
// naming.ErrTLS.
func TestPingNamesTheCertificateAlertToAHostPortClient(t *testing.T) {
	c, certs := etcdtest.StartTLS(t)
	full, err := certs.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	l, _ := newLogger(t)
	for i := range 5 {
		cli, err := naming.NewClient(naming.ClientConfig{Endpoints: c.Endpoints(), TLS: &tls.Config{RootCAs: full.RootCAs, MinVersion: tls.VersionTLS13}, Logger: l, DialTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = naming.Ping(ctx, cli)
		cancel()
		_ = cli.Close()
		t.Logf("ping %d: %v", i, err)
		if err == nil || strings.Contains(err.Error(), "speaks TLS") || !strings.Contains(err.Error(), "requires a TLS client certificate") || !errors.Is(err, naming.ErrTLS) {
			t.Errorf("ping %d without a certificate at host:port: want the certificate etcd requires, wrapping ErrTLS; have %v", i, err)
		}
	}
}

// startTCPFront starts a TCP proxy to target that resets each connection
// accepted while reset() holds and forwards the others. It is closed when
// t ends.
func startTCPFront(t *testing.T, target string, reset func() bool) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveFront(t, lis, target, reset)
}
