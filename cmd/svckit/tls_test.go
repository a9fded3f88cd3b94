package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/internal/proc"
)

// The binaries of svckit, fileserver and fileclient, built once per test
// binary by bins and removed by TestMain.
var (
	binsOnce sync.Once
	binsDir  string
	binsErr  error
)

// bins builds svckit, fileserver and fileclient once and returns the
// directory that holds them.
func bins(t *testing.T) string {
	t.Helper()
	binsOnce.Do(func() {
		if binsDir, binsErr = os.MkdirTemp("", "svckit-bins-"); binsErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", binsDir+string(filepath.Separator),
			".", "../../examples/fileserver/cmd/fileserver", "../../examples/fileserver/cmd/fileclient").CombinedOutput()
		if err != nil {
			binsErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binsErr != nil {
		t.Fatal(binsErr)
	}
	return binsDir
}

// result is how a short command ended.
type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// runBin runs bin with args and the environment plus env, bounded by 30s.
func runBin(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("%s %v: %v", filepath.Base(bin), args, err)
	}
	return r
}

func lines(s string) int { return strings.Count(strings.TrimSuffix(s, "\n"), "\n") + 1 }

// TestMutualTLSEtcdEndToEnd: against an etcd that accepts only mutual
// TLS, the fileserver binary registers, fileclient puts and gets, and
// svckit ls lists it, with the settings as flags or as variables; a
// client without a certificate, or without TLS, is refused at once with
// one line that names etcd and TLS.
func TestMutualTLSEtcdEndToEnd(t *testing.T) {
	dir := bins(t)
	svckit, server, client := filepath.Join(dir, "svckit"), filepath.Join(dir, "fileserver"), filepath.Join(dir, "fileclient")
	c, certs := etcdtest.StartTLS(t)
	url := c.URLs()[0]
	tlsFlags := []string{"--etcd", url, "--etcd-ca", certs.CA, "--etcd-cert", certs.ClientCert, "--etcd-key", certs.ClientKey}
	tlsEnv := []string{"SVCKIT_ETCD_ENDPOINTS=" + url, "SVCKIT_ETCD_CA=" + certs.CA, "SVCKIT_ETCD_CERT=" + certs.ClientCert, "SVCKIT_ETCD_KEY=" + certs.ClientKey}

	root := t.TempDir()
	srv := proc.StartT(t, server, append([]string{"--root", root, "--ttl", "3s"}, tlsFlags...), nil)
	addr, _, err := srv.WaitServing(30 * time.Second)
	if err != nil {
		t.Fatalf("fileserver over mutual TLS: %v", err)
	}

	local := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(local, []byte("over mutual TLS\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runBin(t, client, tlsEnv, "put", local, "tls/in.txt"); r.code != 0 {
		t.Fatalf("fileclient put: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	back := filepath.Join(t.TempDir(), "back.txt")
	if r := runBin(t, client, tlsEnv, "get", "tls/in.txt", back); r.code != 0 {
		t.Fatalf("fileclient get: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(back); err != nil || string(b) != "over mutual TLS\n" {
		t.Fatalf("got back %q, %v", b, err)
	}
	r := runBin(t, svckit, nil, append([]string{"ls"}, tlsFlags...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "fileserver") || !strings.Contains(r.stdout, addr) {
		t.Fatalf("svckit ls: exit %d, want fileserver at %s:\n%s%s", r.code, addr, r.stdout, r.stderr)
	}

	noCert := []string{"--etcd", url, "--etcd-ca", certs.CA}
	for _, tc := range []struct {
		name string
		bin  string
		args []string
	}{
		{"fileclient without a certificate", client, append(noCert, "ls")},
		{"svckit ls without a certificate", svckit, append([]string{"ls"}, noCert...)},
		{"fileclient without TLS", client, []string{"--etcd", c.Endpoint(0), "ls"}},
		{"svckit ls without TLS", svckit, []string{"ls", "--etcd", c.Endpoint(0)}},
	} {
		r := runBin(t, tc.bin, nil, tc.args...)
		t.Logf("%s: exit %d after %s: %s", tc.name, r.code, r.took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
		if r.code != 1 || lines(r.stderr) != 1 || !strings.Contains(r.stderr, "etcd") || !strings.Contains(r.stderr, "TLS") {
			t.Errorf("%s: want exit 1 and one line naming etcd and TLS; have exit %d:\n%s", tc.name, r.code, r.stderr)
		}
		if r.took > 10*time.Second {
			t.Errorf("%s: took %s", tc.name, r.took)
		}
	}
}

// TestBadFlagIsOneLine: every command prints a bad flag on one line and
// exits 2; -h and --help print the usage on stdout and exit 0.
func TestBadFlagIsOneLine(t *testing.T) {
	dir := bins(t)
	for _, cmd := range [][]string{
		{"fileserver"}, {"fileclient"}, {"svckit", "ls"}, {"svckit", "etcd"}, {"svckit", "xds"},
		{"svckit", "proxy"}, {"svckit", "demo"}, {"svckit", "new"},
	} {
		bin, name := filepath.Join(dir, cmd[0]), strings.Join(cmd, " ")
		r := runBin(t, bin, nil, append(cmd[1:], "-x")...)
		if want := name + ": flag provided but not defined: -x (see "; r.code != 2 || lines(r.stderr) != 1 || !strings.HasPrefix(r.stderr, want) || r.stdout != "" {
			t.Errorf("%s -x: want exit 2 and one line %q…; have exit %d, stdout %q, stderr:\n%s", name, want, r.code, r.stdout, r.stderr)
		}
		for _, h := range []string{"-h", "--help"} {
			r := runBin(t, bin, nil, append(cmd[1:], h)...)
			if r.code != 0 || !strings.Contains(r.stdout, "-") || r.stderr != "" {
				t.Errorf("%s %s: want exit 0 and the usage on stdout; have exit %d, stdout %q, stderr %q", name, h, r.code, r.stdout, r.stderr)
			}
		}
	}
	r := runBin(t, filepath.Join(dir, "svckit"), nil, "nope")
	if r.code != 2 || lines(r.stderr) != 1 {
		t.Errorf("svckit nope: want exit 2 and one line; have exit %d:\n%s", r.code, r.stderr)
	}
}

// TestEtcdTLSServesWhatItPrints: `svckit etcd --tls` serves TLS only with
// generated certificates, and the flags it prints reach it.
func TestEtcdTLSServesWhatItPrints(t *testing.T) {
	dir := bins(t)
	svckit := filepath.Join(dir, "svckit")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	tlsDir := filepath.Join(t.TempDir(), "tls")
	p := proc.StartT(t, svckit, []string{"etcd", "--tls", "--listen", addr, "--tls-dir", tlsDir, "--data-dir", t.TempDir()}, nil)
	m, err := p.WaitFor(regexp.MustCompile(`(?m)^flags: (.+)$`), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("svckit etcd --tls:\n%s", p.Output())
	flags := strings.Fields(m[1])
	if want := []string{"--etcd", "https://" + addr, "--etcd-ca", filepath.Join(tlsDir, "ca.pem")}; strings.Join(flags[:4], " ") != strings.Join(want, " ") {
		t.Fatalf("printed flags %v, want them to start with %v", flags, want)
	}
	if r := runBin(t, svckit, nil, append([]string{"ls"}, flags...)...); r.code != 0 || !strings.Contains(r.stdout, "SERVICE") {
		t.Fatalf("svckit ls with the printed flags: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	m, err = p.WaitFor(regexp.MustCompile(`(?m)^env: +export (.+)$`), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r := runBin(t, svckit, strings.Fields(m[1]), "ls"); r.code != 0 {
		t.Fatalf("svckit ls with the printed variables: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, svckit, nil, "ls", "--etcd", "https://"+addr, "--etcd-ca", filepath.Join(tlsDir, "ca.pem")); r.code != 1 {
		t.Fatalf("svckit ls without a client certificate: exit %d, want 1\n%s", r.code, r.stderr)
	}
	if code := p.Stop(syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("svckit etcd after SIGTERM: exit %d\n%s", code, p.Output())
	}
}
