package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/svckit/svckit/examples/fileserver"
	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
)

// fileSize is the file every transfer benchmark moves.
const fileSize = 256 << 20

// randomSource is a file of size random bytes.
func randomSource(b *testing.B, size int64) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "src.bin")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
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
	src := randomSource(b, fileSize)
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
// client on client.Client.Dial: Put (hashing on the server, fsync, rename) and
// Get (hash sent first, verified at the end).
func BenchmarkFileSrv(b *testing.B) {
	src := randomSource(b, fileSize)
	sum := fileSum(b, src)
	ctx, client := startFileSrv(b)
	put := func(b *testing.B) {
		b.Helper()
		f, err := os.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if _, err := client.Put(ctx, "big.bin", f, fileSize, sum, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("upload", func(b *testing.B) {
		defer reportPeakHeap(b)()
		b.SetBytes(fileSize)
		for range b.N {
			put(b)
		}
	})
	b.Run("download", func(b *testing.B) {
		put(b) // untimed: the file to download, if upload did not run
		b.ResetTimer()
		defer reportPeakHeap(b)()
		b.SetBytes(fileSize)
		for range b.N {
			// Get verifies the SHA-256 itself.
			info, err := client.Get(ctx, "big.bin", io.Discard, nil)
			if err != nil {
				b.Fatal(err)
			}
			if info.Size != fileSize {
				b.Fatalf("size %d", info.Size)
			}
		}
	})
}

// BenchmarkFileSrvMemory shows that FileSrv's memory does not grow with the
// file size: for files of 16, 64 and 256 MiB it reports the peak heap in use
// (MiB-peak-heap, the whole process: client, server and etcd) during an
// upload and during a download, each started after a GC. It fails if the
// peak for 256 MiB exceeds the peak for 16 MiB by more than 32 MiB, which a
// server that held a file, or any sizeable part of it, would.
func BenchmarkFileSrvMemory(b *testing.B) {
	sizes := []int64{16 << 20, 64 << 20, 256 << 20}
	srcs, sums := map[int64]string{}, map[int64]string{}
	for _, n := range sizes {
		srcs[n] = randomSource(b, n)
		sums[n] = fileSum(b, srcs[n])
	}
	ctx, client := startFileSrv(b)
	peaks := map[string]float64{}
	for _, dir := range []string{"upload", "download"} {
		for _, n := range sizes {
			name := fmt.Sprintf("%s/%dMiB", dir, n>>20)
			b.Run(name, func(b *testing.B) {
				remote := fmt.Sprintf("mem-%d.bin", n)
				b.SetBytes(n)
				for range b.N {
					b.StopTimer()
					if dir == "download" {
						putFile(ctx, b, client, srcs[n], remote, n, sums[n])
					}
					runtime.GC()
					stop := samplePeakHeap()
					b.StartTimer()
					if dir == "upload" {
						putFile(ctx, b, client, srcs[n], remote, n, sums[n])
					} else if _, err := client.Get(ctx, remote, io.Discard, nil); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					peaks[name] = max(peaks[name], stop())
					b.StartTimer()
				}
				b.ReportMetric(peaks[name], "MiB-peak-heap")
			})
		}
	}
	for _, dir := range []string{"upload", "download"} {
		small, large := peaks[dir+"/16MiB"], peaks[dir+"/256MiB"]
		if small > 0 && large > small+32 {
			b.Errorf("%s: peak heap %.1f MiB for 256 MiB, %.1f MiB for 16 MiB: it grows with the file", dir, large, small)
		}
	}
}

// putFile uploads the local file src to remote.
func putFile(ctx context.Context, b *testing.B, client *fileserver.Client, src, remote string, size int64, sum string) {
	b.Helper()
	f, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := client.Put(ctx, remote, f, size, sum, nil); err != nil {
		b.Fatal(err)
	}
}

// fileSum is the SHA-256 of the file at p, in hex.
func fileSum(b *testing.B, p string) string {
	b.Helper()
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		b.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// startFileSrv starts an embedded etcd, FileSrv on framework.App over a
// temporary root, and a client on client.Client.Dial, with the options
// cmd/fileserver and cmd/fileclient use; all stop when b ends. The context
// bounds the transfers.
func startFileSrv(b *testing.B) (context.Context, *fileserver.Client) {
	b.Helper()
	c := etcdtest.Start(b)
	svc, err := fileserver.NewDirService(b.TempDir(), 1<<40)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = svc.Close() })
	cfg := framework.DefaultConfig()
	cfg.Etcd = c.Endpoints()
	app, err := fileserver.NewApp(svc, framework.WithConfig(cfg), framework.WithoutSignals(),
		framework.WithPropagationDelay(0), framework.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
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
	b.Cleanup(dcancel)
	cc, err := client.Dial(dctx, naming.ClientConfig{Endpoints: c.Endpoints(), Logger: quiet}, "fileserver",
		client.WithLogger(quiet), client.WithGRPCOption(fileserver.ClientWindows()...))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cc.Close() })
	return dctx, fileserver.NewClient(cc)
}

// heapInUse reads the heap in use (objects, live or not yet swept, and the
// unused part of spans in use: MemStats.HeapInuse) without stopping the
// world.
func heapInUse(s []metrics.Sample) uint64 {
	metrics.Read(s)
	return s[0].Value.Uint64() + s[1].Value.Uint64()
}

// samplePeakHeap samples the heap in use every millisecond until the
// returned func is called, which returns the peak in MiB.
func samplePeakHeap() func() float64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	stop := make(chan struct{})
	done := make(chan uint64)
	go func() {
		var peak uint64
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, heapInUse(s))
			select {
			case <-stop:
				done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() float64 {
		close(stop)
		return float64(<-done) / (1 << 20)
	}
}

// reportPeakHeap reports, as MiB-peak-heap, the peak heap in use from its
// call until the returned func is called (client and server share this
// process).
func reportPeakHeap(b *testing.B) func() {
	stop := samplePeakHeap()
	return func() { b.ReportMetric(stop(), "MiB-peak-heap") }
}
