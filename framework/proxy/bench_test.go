package proxy_test

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/svckit/svckit/examples/fileserver"
	"github.com/svckit/svckit/framework/client"
)

// latencies collects the duration of each operation of one benchmark run.
type latencies []time.Duration

func (l latencies) quantile(q float64) time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// report adds p50 and p99 in microseconds to b's output.
func (l latencies) report(b *testing.B) {
	b.ReportMetric(float64(l.quantile(0.50).Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(l.quantile(0.99).Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkProxy compares, in one run, FileSrv calls made directly by a
// thick client (client.Client.Dial) with the same calls made through the
// proxy by a plain grpc-go client: a unary Stat, and a download of a 64 MiB
// file, verified. Both clients use FileSrv's client code and flow-control
// windows; the backend is one in-process FileSrv instance, the proxy runs
// in the same process.
//
//	go test -run '^$' -bench Proxy -benchtime 2000x ./framework/proxy/
func BenchmarkProxy(b *testing.B) {
	c, cli := startEtcd(b)
	dir := b.TempDir()
	data := make([]byte, 64<<20)
	_, _ = rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	startFileSrv(b, c, cli, dir)
	p, addr := startProxy(b, cli)
	waitRoute(b, p, fileService, "fileserver")
	ctx := context.Background()
	dc, err := client.NewFromEtcd(cli, client.WithGRPCOption(fileserver.ClientWindows()...))
	if err != nil {
		b.Fatal(err)
	}
	direct, err := dc.Dial(ctx, "fileserver")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = direct.Close() })
	proxied := dialProxy(b, addr, fileserver.ClientWindows()...)

	for _, mode := range []struct {
		name string
		cc   *grpc.ClientConn
	}{{"direct", direct}, {"proxy", proxied}} {
		fs := fileserver.NewClient(mode.cc)
		if _, _, err := fs.Stat(ctx, "big.bin"); err != nil { // warm: connection and SHA-256 cache
			b.Fatal(err)
		}
		b.Run("unary/"+mode.name, func(b *testing.B) {
			l := make(latencies, 0, b.N)
			for b.Loop() {
				start := time.Now()
				if _, _, err := fs.Stat(ctx, "big.bin"); err != nil {
					b.Fatal(err)
				}
				l = append(l, time.Since(start))
			}
			l.report(b)
		})
	}
	for _, mode := range []struct {
		name string
		cc   *grpc.ClientConn
	}{{"direct", direct}, {"proxy", proxied}} {
		fs := fileserver.NewClient(mode.cc)
		b.Run("download64MiB/"+mode.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			l := make(latencies, 0, b.N)
			for b.Loop() {
				start := time.Now()
				info, err := fs.Get(ctx, "big.bin", io.Discard, nil)
				if err != nil || info.Size != int64(len(data)) {
					b.Fatalf("get: %+v, %v", info, err)
				}
				l = append(l, time.Since(start))
			}
			l.report(b)
		})
	}
}
