package fileserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/examples/fileserver"
)

// smallDisk mounts a 1 MiB tmpfs on a temporary directory and returns it;
// it is unmounted at cleanup, after whatever the test opens on it closes.
func smallDisk(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a 1 MiB tmpfs (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func TestFullDiskIsResourceExhausted(t *testing.T) {
	dir := smallDisk(t)
	s, err := fileserver.NewDirService(dir, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	big := make([]byte, 2<<20)
	_, _ = rand.Read(big)

	_, err = s.Upload(ctx, "big.bin", int64(len(big)), sum(big), bytes.NewReader(big))
	if !errors.Is(err, fileserver.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("service: have %v, want ErrNoSpace wrapping ENOSPC", err)
	}
	if e := entries(t, dir); len(e) != 0 {
		t.Errorf("service: failed upload left %v", e)
	}

	_, err = serve(t, s).Put(ctx, "big.bin", bytes.NewReader(big), int64(len(big)), sum(big), nil)
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "no space left on device") {
		t.Errorf("gRPC: have %v, want ResourceExhausted saying no space left on device", err)
	}
	if strings.Contains(st.Message(), dir) {
		t.Errorf("gRPC: message %q names the server's directory", st.Message())
	}
	t.Logf("client sees: %v", err)
	if e := entries(t, dir); len(e) != 0 {
		t.Errorf("gRPC: failed upload left %v", e)
	}

	small := []byte("fits")
	if _, err := s.Upload(ctx, "small", int64(len(small)), sum(small), bytes.NewReader(small)); err != nil {
		t.Errorf("small upload after the failures: %v", err)
	}
}
