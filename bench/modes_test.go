package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/svckit/svckit/examples/fileserver"
	fsv1 "github.com/svckit/svckit/examples/fileserver/proto/fileserver/v1"
	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/proxy"
	"github.com/svckit/svckit/framework/xds"
)

// BenchmarkModes compares the three balancing modes on FileSrv in one run:
// direct (client.Client.Dial, the thick client), through svckit proxy (a
// client that knows only the proxy's address), and through svckit xds (a
// plain grpc-go client on xds:///fileserver, round robin). Three FileSrv
// instances, the proxy, the xDS server and etcd all run in this process, on
// loopback, so the modes share the same two cores.
//
//   - stat/MODE: one Stat call after another; reports us-p50 and us-p99.
//   - download-64MiB/MODE: one 64 MiB download per iteration, checked
//     against its SHA-256; reports MB/s.
//   - propagation/MODE: a fourth instance is started; timed is from its
//     registration until a List call through MODE reaches it (4 callers
//     in a loop; List, because the first Stat of a file on an instance
//     hashes it). Reports ms-median. The proxy is left out: it reaches
//     instances through client.Client.Dial, as direct does.
func BenchmarkModes(b *testing.B) {
	f := startModes(b)
	for _, kind := range []string{"stat", "download-64MiB"} {
		for _, m := range f.modes {
			b.Run(kind+"/"+m.name, func(b *testing.B) {
				c := fsv1.NewFileServiceClient(m.cc)
				if kind == "stat" {
					benchStat(b, c, f.path)
				} else {
					benchDownload(b, c, f.path, f.size, f.sum)
				}
			})
		}
	}
	for _, m := range f.modes {
		if m.name == "proxy" {
			continue
		}
		b.Run("propagation/"+m.name, func(b *testing.B) { benchPropagation(b, f, fsv1.NewFileServiceClient(m.cc)) })
	}
}

type mode struct {
	name string
	cc   *grpc.ClientConn
}

type modesFixture struct {
	cli   *clientv3.Client
	etcd  string
	root  string
	path  string
	size  int64
	sum   string
	modes []mode
}

var quietLog = slog.New(slog.DiscardHandler)

// startModeInstance starts a FileSrv instance on framework.App over root and
// returns its address and a stop function.
func startModeInstance(b *testing.B, cli *clientv3.Client, root string) (string, func()) {
	b.Helper()
	cfg := framework.DefaultConfig()
	svc, err := fileserver.NewDirService(root, 1<<30)
	if err != nil {
		b.Fatal(err)
	}
	app, err := fileserver.NewApp(svc, framework.WithConfig(cfg), framework.WithEtcd(cli),
		framework.WithoutSignals(), framework.WithLogger(quietLog), framework.WithPropagationDelay(0))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	select {
	case <-app.Started():
	case err := <-done:
		b.Fatalf("fileserver: %v", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			svc.Close()
		}
	}
	b.Cleanup(stop)
	return app.Addr(), stop
}

// startModes starts etcd, three FileSrv instances, the proxy and the xDS
// server, dials each mode, uploads the 64 MiB file and waits until every
// mode answers.
func startModes(b *testing.B) *modesFixture {
	b.Helper()
	c := etcdtest.Start(b)
	f := &modesFixture{cli: c.Client(b), etcd: c.Endpoint(0), root: b.TempDir(), path: "modes/64MiB.bin", size: 64 << 20}
	for range 3 {
		startModeInstance(b, f.cli, f.root)
	}
	direct := dialModeDirect(b, f.cli)
	f.modes = []mode{{"direct", direct}, {"proxy", dialModeProxy(b, f.cli)}, {"xds", dialModeXDS(b, f.cli)}}
	uploadModeFile(b, f, direct)
	waitModes(b, f)
	return f
}

// dialModeDirect returns a conn of the thick client to fileserver.
func dialModeDirect(b *testing.B, cli *clientv3.Client) *grpc.ClientConn {
	b.Helper()
	dc, err := client.NewFromEtcd(cli, client.WithLogger(quietLog), client.WithGRPCOption(fileserver.ClientWindows()...))
	if err != nil {
		b.Fatal(err)
	}
	direct, err := dc.Dial(context.Background(), "fileserver")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = direct.Close() })
	return direct
}

// dialModeProxy starts the proxy and returns a client of its address alone.
func dialModeProxy(b *testing.B, cli *clientv3.Client) *grpc.ClientConn {
	b.Helper()
	px, err := proxy.New(cli, proxy.WithLogger(quietLog),
		// FileSrv's flow-control windows (8 MiB per stream, 16 MiB per
		// connection), without its codec: the proxy forwards raw frames.
		proxy.WithServerOption(grpc.InitialWindowSize(8<<20), grpc.InitialConnWindowSize(16<<20)),
		proxy.WithBackendOptions(client.WithGRPCOption(fileserver.ClientWindows()...)))
	if err != nil {
		b.Fatal(err)
	}
	plis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	pctx, pstop := context.WithCancel(context.Background())
	pdone := make(chan error, 1)
	go func() { pdone <- px.Serve(pctx, plis) }()
	b.Cleanup(func() { pstop(); <-pdone })
	viaProxy, err := grpc.NewClient(plis.Addr().String(), append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials())}, fileserver.ClientWindows()...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = viaProxy.Close() })
	return viaProxy
}

// dialModeXDS starts the xDS server and returns a plain grpc-go client of
// xds:///fileserver.
func dialModeXDS(b *testing.B, cli *clientv3.Client) *grpc.ClientConn {
	b.Helper()
	xs, err := xds.New(naming.NewBuilder(cli, naming.WithResolverLogger(quietLog)), xds.WithLogger(quietLog))
	if err != nil {
		b.Fatal(err)
	}
	xlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	xctx, xstop := context.WithCancel(context.Background())
	xdone := make(chan error, 1)
	go func() { xdone <- xs.Serve(xctx, xlis) }()
	b.Cleanup(func() { xstop(); <-xdone })
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(fmt.Sprintf(
		`{"xds_servers":[{"server_uri":%q,"channel_creds":[{"type":"insecure"}],"server_features":["xds_v3"]}],"node":{"id":"bench"}}`, xlis.Addr())))
	if err != nil {
		b.Fatal(err)
	}
	viaXDS, err := grpc.NewClient("xds:///fileserver", append([]grpc.DialOption{grpc.WithResolvers(rb),
		grpc.WithTransportCredentials(insecure.NewCredentials())}, fileserver.ClientWindows()...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = viaXDS.Close() })
	return viaXDS
}

// uploadModeFile uploads one file of f.size random bytes to f.path through
// direct, and sets f.sum to its SHA-256.
func uploadModeFile(b *testing.B, f *modesFixture, direct *grpc.ClientConn) {
	b.Helper()
	data := make([]byte, f.size)
	_, _ = rand.Read(data)
	s := sha256.Sum256(data)
	f.sum = hex.EncodeToString(s[:])
	uctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	up, err := fsv1.NewFileServiceClient(direct).Upload(uctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := up.Send(&fsv1.UploadRequest{Msg: &fsv1.UploadRequest_Header{Header: &fsv1.UploadHeader{Path: f.path, Size: f.size, Sha256: f.sum}}}); err != nil {
		b.Fatal(err)
	}
	for off := 0; off < len(data); off += fileserver.MaxChunk {
		if err := up.Send(&fsv1.UploadRequest{Msg: &fsv1.UploadRequest_Chunk{Chunk: data[off:min(off+fileserver.MaxChunk, len(data))]}}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := up.CloseAndRecv(); err != nil {
		b.Fatal(err)
	}
}

// waitModes returns once every mode answers a Stat of f.path, so that no
// timing includes a first connection.
func waitModes(b *testing.B, f *modesFixture) {
	b.Helper()
	for _, m := range f.modes {
		wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := fsv1.NewFileServiceClient(m.cc).Stat(wctx, &fsv1.StatRequest{Path: f.path}, grpc.WaitForReady(true))
		wcancel()
		if err != nil {
			b.Fatalf("%s: %v", m.name, err)
		}
	}
}

func benchStat(b *testing.B, c fsv1.FileServiceClient, path string) {
	ctx := context.Background()
	for range 200 { // warm every connection
		if _, err := c.Stat(ctx, &fsv1.StatRequest{Path: path}); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t := time.Now()
		if _, err := c.Stat(ctx, &fsv1.StatRequest{Path: path}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(quantile(lat, 0.5).Microseconds()), "us-p50")
	b.ReportMetric(float64(quantile(lat, 0.99).Microseconds()), "us-p99")
}

func benchDownload(b *testing.B, c fsv1.FileServiceClient, path string, size int64, sum string) {
	b.SetBytes(size)
	h := sha256.New()
	for range b.N {
		h.Reset()
		s, err := c.Download(context.Background(), &fsv1.DownloadRequest{Path: path})
		if err != nil {
			b.Fatal(err)
		}
		n := int64(0)
		for {
			m, err := s.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			_, _ = h.Write(m.GetChunk())
			n += int64(len(m.GetChunk()))
		}
		if got := hex.EncodeToString(h.Sum(nil)); n != size || got != sum {
			b.Fatalf("downloaded %d bytes, sha256 %s; want %d, %s", n, got, size, sum)
		}
	}
}

// callers call in a loop while an instance starts.
const callers = 4

func benchPropagation(b *testing.B, f *modesFixture, c fsv1.FileServiceClient) {
	var ds []time.Duration
	for range b.N {
		b.StopTimer()
		addr, stop := startModeInstance(b, f.cli, f.root)
		start := time.Now()
		b.StartTimer()
		reached := make(chan time.Duration, 4)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		for range callers {
			go func() {
				for ctx.Err() == nil {
					var p peer.Peer
					if _, err := c.List(ctx, &fsv1.ListRequest{Dir: "modes"}, grpc.Peer(&p)); err == nil && p.Addr.String() == addr {
						reached <- time.Since(start)
						return
					}
				}
			}()
		}
		var d time.Duration
		select {
		case d = <-reached:
		case <-ctx.Done():
			b.Fatalf("no call reached the new instance %s", addr)
		}
		cancel()
		b.StopTimer()
		ds = append(ds, d)
		stop()
		// Wait until the client no longer reaches it before the next round.
		for {
			var p peer.Peer
			_, err := c.List(context.Background(), &fsv1.ListRequest{Dir: "modes"}, grpc.Peer(&p))
			if err == nil && p.Addr.String() != addr {
				break
			}
		}
		b.StartTimer()
	}
	slices.Sort(ds)
	b.ReportMetric(float64(quantile(ds, 0.5).Microseconds())/1000, "ms-median")
}
