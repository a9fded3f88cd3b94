package fileserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/svckit/svckit/examples/fileserver"
	svcclient "github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/proc"
)

var serverBin, clientBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fileserver-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverBin, clientBin = filepath.Join(dir, "fileserver"), filepath.Join(dir, "fileclient")
	for bin, pkg := range map[string]string{serverBin: "./cmd/fileserver", clientBin: "./cmd/fileclient"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

type server struct {
	*proc.Proc
	addr, admin string
}

// startServer runs a fileserver on root against etcd, with extra flags,
// and waits until it serves; it is killed at cleanup.
func startServer(t *testing.T, etcd, root string, extra ...string) *server {
	t.Helper()
	args := append([]string{"--etcd", etcd, "--root", root, "--ttl", "2s", "--admin", "127.0.0.1:0", "--listen", "127.0.0.1:0"}, extra...)
	s := &server{Proc: proc.StartT(t, serverBin, args, nil)}
	var err error
	if s.addr, s.admin, err = s.WaitServing(30 * time.Second); err != nil {
		t.Fatalf("fileserver: %v", err)
	}
	return s
}

// downloads returns how many Download calls the server has started.
func (s *server) downloads() int {
	resp, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`grpc_server_started_total\{grpc_method="Download",[^}]*\} (\d+)`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	var n int
	fmt.Sscan(string(m[1]), &n)
	return n
}

// client runs fileclient and returns its output and exit code.
func client(t *testing.T, etcd string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(clientBin, append([]string{"--etcd", etcd}, args...)...)
	out, _ := cmd.CombinedOutput()
	return string(out), cmd.ProcessState.ExitCode()
}

func randomFile(t *testing.T, dir, name string, size int) string {
	t.Helper()
	b := make([]byte, size)
	_, _ = rand.Read(b)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// visible lists the files under root on disk, uploads in progress included.
func visible(t *testing.T, root string) []string { return entries(t, root) }

func TestPutGetThroughThreeInstances(t *testing.T) {
	c := etcdtest.Start(t)
	etcd := c.Endpoint(0)
	root, work := t.TempDir(), t.TempDir()
	for range 3 {
		startServer(t, etcd, root)
	}
	src := randomFile(t, work, "src.bin", 20<<20)
	if out, code := client(t, etcd, "put", src, "big/src.bin"); code != 0 {
		t.Fatalf("put: %d %s", code, out)
	}
	dst := filepath.Join(work, "dst.bin")
	if out, code := client(t, etcd, "get", "big/src.bin", dst); code != 0 {
		t.Fatalf("get: %d %s", code, out)
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Fatal("downloaded bytes differ")
	}
	out, code := client(t, etcd, "get", "../etc/passwd", filepath.Join(work, "x"))
	if code == 0 || !strings.Contains(out, "InvalidArgument") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("escaping path: exit %d, output %q; want one line with InvalidArgument", code, out)
	}
	if _, err := os.Stat(filepath.Join(work, "x")); err == nil {
		t.Fatal("a refused get left a local file")
	}
}

// blockingWriter holds the download after its first chunk until released.
type blockingWriter struct {
	buf     bytes.Buffer
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.started); <-w.release })
	return w.buf.Write(p)
}

func TestGetResumesWhenItsInstanceIsKilled(t *testing.T) {
	c := etcdtest.Start(t)
	etcd := c.Endpoint(0)
	root, work := t.TempDir(), t.TempDir()
	var srvs []*server
	for range 3 {
		srvs = append(srvs, startServer(t, etcd, root))
	}
	src := randomFile(t, work, "src.bin", 8<<20)
	if out, code := client(t, etcd, "put", src, "f.bin"); code != 0 {
		t.Fatalf("put: %d %s", code, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cc, err := svcclient.Dial(ctx, naming.ClientConfig{Endpoints: c.Endpoints()}, "fileserver")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	w := &blockingWriter{started: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := fileserver.NewClient(cc).Get(ctx, "f.bin", w, nil)
		done <- err
	}()
	<-w.started
	var victim *server
	for _, s := range srvs {
		if s.downloads() > 0 {
			victim = s
		}
	}
	if victim == nil {
		t.Fatal("no instance is serving the download")
	}
	victim.Kill()
	close(w.release)
	if err := <-done; err != nil {
		t.Fatalf("get after kill -9 of its instance %s: %v", victim.addr, err)
	}
	want, _ := os.ReadFile(src)
	if !bytes.Equal(w.buf.Bytes(), want) {
		t.Fatal("resumed download differs from the file")
	}
	t.Logf("download resumed after kill -9 of %s: %d bytes verified", victim.addr, w.buf.Len())
}

func TestConcurrentPutsOfOnePathNeverMix(t *testing.T) {
	c := etcdtest.Start(t)
	etcd := c.Endpoint(0)
	root, work := t.TempDir(), t.TempDir()
	for range 3 {
		startServer(t, etcd, root)
	}
	var srcs []string
	for i := range 4 {
		srcs = append(srcs, randomFile(t, work, fmt.Sprintf("src%d", i), 2<<20))
	}
	var wg sync.WaitGroup
	for _, s := range srcs {
		wg.Go(func() {
			if out, code := client(t, etcd, "put", s, "same.bin"); code != 0 {
				t.Errorf("put %s: %s", s, out)
			}
		})
	}
	wg.Wait()
	got, err := os.ReadFile(filepath.Join(root, "same.bin"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range srcs {
		if b, _ := os.ReadFile(s); bytes.Equal(b, got) {
			return
		}
	}
	t.Fatal("stored file matches none of the uploads")
}

func TestInterruptedPutLeavesNothing(t *testing.T) {
	c := etcdtest.Start(t)
	etcd := c.Endpoint(0)
	root, work := t.TempDir(), t.TempDir()
	startServer(t, etcd, root)
	src := randomFile(t, work, "src.bin", 200<<20)
	cmd := exec.Command(clientBin, "--etcd", etcd, "put", src, "partial.bin")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "upload in progress", func() bool { return len(visible(t, root)) > 0 })
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	poll.Until(t, 30*time.Second, "partial upload removed", func() bool { return len(visible(t, root)) == 0 })
	if out, code := client(t, etcd, "stat", "partial.bin"); code == 0 || !strings.Contains(out, "NotFound") {
		t.Fatalf("stat after an interrupted put: %d %s", code, out)
	}
}

func TestRefusalsCarryTheRightCode(t *testing.T) {
	c := etcdtest.Start(t)
	etcd := c.Endpoint(0)
	root, work, outside := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	startServer(t, etcd, root, "--max-file-size", "1000")
	big := randomFile(t, work, "big", 2000)
	small := randomFile(t, work, "small", 10)
	for _, tc := range []struct {
		args []string
		code string
	}{
		{[]string{"get", "../x", filepath.Join(work, "o1")}, "InvalidArgument"},
		{[]string{"get", "/etc/passwd", filepath.Join(work, "o2")}, "InvalidArgument"},
		{[]string{"stat", "escape/secret"}, "InvalidArgument"},
		{[]string{"put", small, "escape/new"}, "InvalidArgument"},
		{[]string{"put", small, "../new"}, "InvalidArgument"},
		{[]string{"put", big, "big"}, "ResourceExhausted"},
		{[]string{"stat", "missing"}, "NotFound"},
	} {
		o, code := client(t, etcd, tc.args...)
		if code == 0 || !strings.Contains(o, "code = "+tc.code) {
			t.Errorf("%v: exit %d, %q; want %s", tc.args, code, o, tc.code)
		}
	}
	if e := entries(t, outside); len(e) != 1 {
		t.Errorf("outside the root: %v", e)
	}
	if e := visible(t, root); len(e) != 1 || e[0] != "escape" {
		t.Errorf("inside the root: %v, want only the symlink", e)
	}
}

// TestMainNamesAMissingRootOnce checks the one line a missing --root gives:
// the flag and the directory once, then the cause.
func TestMainNamesAMissingRootOnce(t *testing.T) {
	root := filepath.Join(t.TempDir(), "missing")
	err := fileserver.Main([]string{"--root", root, "--etcd", "127.0.0.1:1"}, "test")
	want := "--root " + root + ": no such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("have %v, want %q", err, want)
	}
}
