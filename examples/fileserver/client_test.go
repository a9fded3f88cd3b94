package fileserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/examples/fileserver"
	pb "github.com/svckit/svckit/examples/fileserver/proto/fileserver/v1"
)

// serve runs svc on a gRPC server on 127.0.0.1, with the transfer options
// and opts, and returns a client of it; both stop at cleanup.
func serve(t *testing.T, svc fileserver.Service, opts ...grpc.ServerOption) *fileserver.Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(fileserver.ServerWindows(), opts...)...)
	fileserver.Register(srv, svc, fileserver.MakeEndpoints(svc))
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(lis) })
	cc, err := grpc.NewClient(lis.Addr().String(),
		append(fileserver.ClientWindows(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		srv.Stop()
		wg.Wait()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cc.Close()
		srv.Stop()
		wg.Wait()
	})
	return fileserver.NewClient(cc)
}

// downloadCuts counts Download calls, and ends the first one with
// Unavailable after it has sent the file's info and chunks chunks, as an
// instance that dies mid-stream does.
type downloadCuts struct {
	chunks int
	calls  atomic.Int32
}

func (d *downloadCuts) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if info.FullMethod != pb.FileService_Download_FullMethodName {
		return h(srv, ss)
	}
	if d.calls.Add(1) > 1 || d.chunks < 0 {
		return h(srv, ss)
	}
	return h(srv, &cutStream{ServerStream: ss, left: 1 + d.chunks})
}

type cutStream struct {
	grpc.ServerStream
	left int
}

func (s *cutStream) SendMsg(m any) error {
	if s.left == 0 {
		return status.Error(codes.Unavailable, "test: stream cut")
	}
	s.left--
	return s.ServerStream.SendMsg(m)
}

// storeRandom uploads size random bytes to p through s and returns them.
func storeRandom(t *testing.T, s fileserver.Service, p string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	_, _ = rand.Read(b)
	if _, err := s.Upload(context.Background(), p, int64(size), sum(b), bytes.NewReader(b)); err != nil {
		t.Fatalf("upload %s: %v", p, err)
	}
	return b
}

func TestGetResumesABrokenStreamExactly(t *testing.T) {
	s, _ := newService(t, 16<<20)
	want := storeRandom(t, s, "f.bin", 3<<20+12345)
	cuts := &downloadCuts{chunks: 2}
	c := serve(t, s, grpc.StreamInterceptor(cuts.intercept))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var have bytes.Buffer
	if _, err := c.Get(ctx, "f.bin", &have, nil); err != nil {
		t.Fatalf("get over a stream cut after 2 chunks: %v", err)
	}
	if n := cuts.calls.Load(); n != 2 {
		t.Errorf("Download calls: have %d, want 2 (one cut, one resumed)", n)
	}
	if !bytes.Equal(have.Bytes(), want) {
		t.Fatalf("resumed download: have %d bytes, want %d, or different bytes", have.Len(), len(want))
	}
}

var errDiskBroke = errors.New("test: local disk broke")

// failOnce is a writer that, once, accepts only part of a write after
// limit bytes: with err set it returns err, else it makes a short write
// with no error. Every other write succeeds.
type failOnce struct {
	buf    bytes.Buffer
	limit  int
	err    error
	failed bool
}

func (w *failOnce) Write(p []byte) (int, error) {
	if w.failed || w.buf.Len()+len(p) <= w.limit {
		return w.buf.Write(p)
	}
	w.failed = true
	k := w.limit - w.buf.Len()
	w.buf.Write(p[:k])
	return k, w.err
}

func TestGetDoesNotRetryALocalWriteError(t *testing.T) {
	s, _ := newService(t, 16<<20)
	want := storeRandom(t, s, "f.bin", 3<<20+12345)
	for _, tc := range []struct {
		name    string
		err     error // the writer's, nil for a short write
		wantErr error
	}{
		{"error", errDiskBroke, errDiskBroke},
		{"short write", nil, io.ErrShortWrite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cuts := &downloadCuts{chunks: -1} // counts only
			c := serve(t, s, grpc.StreamInterceptor(cuts.intercept))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			w := &failOnce{limit: 1<<20 + 5000, err: tc.err}
			_, err := c.Get(ctx, "f.bin", w, nil)
			if err == nil {
				corrupt := !bytes.Equal(w.buf.Bytes(), want)
				t.Fatalf("get with a writer failing after %d bytes: have success (output %d bytes, corrupt=%t), want an error",
					w.limit, w.buf.Len(), corrupt)
			}
			if !errors.Is(err, fileserver.ErrLocalWrite) || !errors.Is(err, tc.wantErr) {
				t.Errorf("get: have %v, want ErrLocalWrite wrapping %v", err, tc.wantErr)
			}
			if n := cuts.calls.Load(); n != 1 {
				t.Errorf("Download calls: have %d, want 1 (a local error is not retried)", n)
			}
			if have := w.buf.Bytes(); !bytes.Equal(have, want[:len(have)]) || len(have) != w.limit {
				t.Errorf("output: have %d bytes, want the file's first %d", len(have), w.limit)
			}
		})
	}
}
