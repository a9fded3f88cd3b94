package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/svckit/svckit/examples/fileserver"
	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
)

// fileSize is the file every transfer benchmark moves.
const fileSize = 256 << 20

// randomSource is a file of fileSize random bytes, shared by the benchmarks.
func randomSource(b *testing.B) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "src.bin")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, fileSize); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkTCPCopy is the reference: the file read from disk and sent over
// a loopback TCP socket with io.Copy, received and discarded (or hashed on
// both ends with /sha256).
func BenchmarkTCPCopy(b *testing.B) {
	src := randomSource(b)
	dir := b.TempDir()
	for _, mode := range []string{"raw", "sha256", "sha256+fsync"} {
		withSum, toDisk := mode != "raw", mode == "sha256+fsync"
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(fileSize)
			for range b.N {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				done := make(chan error, 1)
				go func() {
					c, err := lis.Accept()
					if err != nil {
						done <- err
						return
					}
					defer c.Close()
					var w io.Writer = io.Discard
					if withSum {
						w = sha256.New()
					}
					if toDisk {
						f, err := os.Create(filepath.Join(dir, "dst.bin"))
						if err != nil {
							done <- err
							return
						}
						defer f.Close()
						w = io.MultiWriter(w, f)
						if _, err = io.CopyBuffer(w, c, make([]byte, 1<<20)); err == nil {
							err = f.Sync()
						}
						done <- err
						return
					}
					_, err = io.Copy(w, c)
					done <- err
				}()
				c, err := net.Dial("tcp", lis.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				f, err := os.Open(src)
				if err != nil {
					b.Fatal(err)
				}
				var r io.Reader = f
				var h hash.Hash
				if withSum {
					h = sha256.New()
					r = io.TeeReader(f, h)
				}
				if _, err := io.Copy(c, r); err != nil {
					b.Fatal(err)
				}
				_ = c.Close()
				_ = f.Close()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				_ = lis.Close()
			}
		})
	}
}

// BenchmarkFileSrv moves the file through FileSrv on framework.App, with a
// client on framework.Dial: Put (hashing on both ends, fsync, rename) and
// Get (hash sent first, verified at the end).
func BenchmarkFileSrv(b *testing.B) {
	src := randomSource(b)
	data, err := os.ReadFile(src)
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.Sum256(data)
	sum := hex.EncodeToString(h[:])
	c := etcdtest.Start(b)
	root := b.TempDir()
	svc, err := fileserver.NewDirService(root, 1<<40)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = svc.Close() })
	cfg := framework.DefaultConfig()
	cfg.Etcd = c.Endpoints()
	quiet := slog.New(slog.DiscardHandler)
	app, err := framework.New("fileserver", framework.WithConfig(cfg), framework.WithoutSignals(),
		framework.WithPropagationDelay(0), framework.WithLogger(quiet),
		framework.WithMaxMsgSize(fileserver.MaxChunk+(64<<10), 4<<20),
		framework.WithServerOption(fileserver.ServerWindows()...))
	if err != nil {
		b.Fatal(err)
	}
	fileserver.Register(app.GRPC(), svc, fileserver.MakeEndpoints(svc))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	select {
	case <-app.Started():
	case <-time.After(waitTimeout):
		b.Fatal("App not started")
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer dcancel()
	cc, err := framework.Dial(dctx, "fileserver", framework.WithEtcd(naming.ClientConfig{Endpoints: c.Endpoints(), Logger: quiet}),
		framework.WithDialLogger(quiet), framework.WithGRPCDialOption(fileserver.ClientWindows()...))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cc.Close() })
	client := fileserver.NewClient(cc)

	b.Run("upload", func(b *testing.B) {
		defer reportPeakHeap(b)()
		b.SetBytes(fileSize)
		for range b.N {
			f, err := os.Open(src)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := client.Put(dctx, "big.bin", f, fileSize, sum, nil); err != nil {
				b.Fatal(err)
			}
			_ = f.Close()
		}
	})
	b.Run("download", func(b *testing.B) {
		defer reportPeakHeap(b)()
		b.SetBytes(fileSize)
		for range b.N {
			// Get verifies the SHA-256 itself.
			info, err := client.Get(dctx, "big.bin", io.Discard, nil)
			if err != nil {
				b.Fatal(err)
			}
			if info.Size != fileSize {
				b.Fatalf("size %d", info.Size)
			}
		}
	})
}

// reportPeakHeap samples the heap in use every 5 ms until the returned func
// is called, and reports the peak (client and server share this process).
func reportPeakHeap(b *testing.B) func() {
	stop := make(chan struct{})
	done := make(chan uint64)
	go func() {
		var peak uint64
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-stop:
				done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(stop)
		b.ReportMetric(float64(<-done)/(1<<20), "MiB-peak-heap")
	}
}
