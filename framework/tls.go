package framework

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
)

// ServerTLS returns gRPC server credentials from PEM files: the server's
// certificate and key, and, if caFile is set, the CA that client
// certificates must chain to (mutual TLS: clients without a valid
// certificate are refused during the handshake).
func ServerTLS(certFile, keyFile, caFile string) (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s / --tls-key %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadPool("--tls-ca", caFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(cfg), nil
}

// ClientTLS returns gRPC client credentials from PEM files: the CA that
// server certificates must chain to, and, for mutual TLS, the client's
// certificate and key (both or neither). serverName, if set, replaces the
// dialled host in the certificate check.
func ClientTLS(caFile, certFile, keyFile, serverName string) (credentials.TransportCredentials, error) {
	if caFile == "" {
		return nil, errors.New("client TLS needs a CA file")
	}
	pool, err := loadPool("CA", caFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	switch {
	case certFile != "" && keyFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s / key %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case certFile != "" || keyFile != "":
		return nil, errors.New("client TLS needs both a certificate and a key, or neither")
	}
	return credentials.NewTLS(cfg), nil
}

// etcdTLS returns the TLS configuration of the etcd client, or nil for
// plaintext: see Config.EtcdClientConfig.
func (c Config) etcdTLS() (*tls.Config, error) {
	if !c.etcdWantsTLS() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12} // nil RootCAs: the system roots
	if c.EtcdCA != "" {
		pool, err := loadPool("--etcd-ca", c.EtcdCA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if c.EtcdCert != "" && c.EtcdKey != "" {
		cert, err := tls.LoadX509KeyPair(c.EtcdCert, c.EtcdKey)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert %s / --etcd-key %s: %w", c.EtcdCert, c.EtcdKey, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// loadPool reads the PEM CA file of flag (named in errors).
func loadPool(flag, caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, caFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", flag, caFile)
	}
	return pool, nil
}
