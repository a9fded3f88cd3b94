package etcdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// certValidity is how long generated certificates are valid: long enough
// for a development etcd left running, short enough not to pass for real.
const certValidity = 90 * 24 * time.Hour

// Certs names the PEM files of a development PKI that GenerateCerts wrote:
// a CA, a server certificate for 127.0.0.1, ::1 and localhost, and a client
// certificate, all signed by the CA.
type Certs struct {
	Dir                   string
	CA                    string // ca.pem
	ServerCert, ServerKey string // server.pem, server-key.pem
	ClientCert, ClientKey string // client.pem, client-key.pem
}

// GenerateCerts writes a new CA, server and client certificate (ECDSA
// P-256, valid 90 days) into dir, which it creates if needed; keys are
// readable by the owner only. Files of an earlier run are replaced.
func GenerateCerts(dir string) (Certs, error) {
	c := Certs{
		Dir:        dir,
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Certs{}, fmt.Errorf("etcdtest: certs: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Certs{}, fmt.Errorf("etcdtest: certs: %w", err)
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "svckit development etcd CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, caCert, err := sign(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return Certs{}, err
	}
	if err := writePEM(c.CA, "CERTIFICATE", caDER, 0o644); err != nil {
		return Certs{}, err
	}
	leaves := []struct {
		cert, key string
		tmpl      *x509.Certificate
	}{
		// etcd's gateway dials its own client port with the server
		// certificate when client certificates are required: the server
		// certificate serves as a client certificate too.
		{c.ServerCert, c.ServerKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "etcd"},
			DNSNames:    []string{"localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}},
		{c.ClientCert, c.ClientKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "svckit"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
	}
	for _, l := range leaves {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return Certs{}, fmt.Errorf("etcdtest: certs: %w", err)
		}
		l.tmpl.NotBefore, l.tmpl.NotAfter = now.Add(-time.Hour), now.Add(certValidity)
		l.tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, _, err := sign(l.tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return Certs{}, err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return Certs{}, fmt.Errorf("etcdtest: certs: %w", err)
		}
		if err := writePEM(l.cert, "CERTIFICATE", der, 0o644); err != nil {
			return Certs{}, err
		}
		if err := writePEM(l.key, "PRIVATE KEY", keyDER, 0o600); err != nil {
			return Certs{}, err
		}
	}
	return c, nil
}

// ServerTLS returns the TLS options of an etcd that serves clients over
// TLS only with the server certificate and, if clientCertAuth, refuses
// clients without a certificate signed by the CA. Cluster.Client then uses
// the client certificate.
func (c Certs) ServerTLS(clientCertAuth bool) (*TLS, error) {
	client, err := c.ClientTLS()
	if err != nil {
		return nil, err
	}
	return &TLS{CertFile: c.ServerCert, KeyFile: c.ServerKey, ClientCAFile: c.CA, ClientCertAuth: clientCertAuth, Client: client}, nil
}

// ClientTLS returns a client configuration that trusts the CA and presents
// the client certificate.
func (c Certs) ClientTLS() (*tls.Config, error) {
	pemCA, err := os.ReadFile(c.CA)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return nil, fmt.Errorf("etcdtest: no certificate in %s", c.CA)
	}
	cert, err := tls.LoadX509KeyPair(c.ClientCert, c.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, priv *ecdsa.PrivateKey) ([]byte, *x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("etcdtest: certs: %w", err)
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		return nil, nil, fmt.Errorf("etcdtest: certs: %s: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("etcdtest: certs: %w", err)
	}
	return der, cert, nil
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	// Remove first: WriteFile keeps the mode of a file that exists.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("etcdtest: certs: %w", err)
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("etcdtest: certs: %w", err)
	}
	return nil
}
