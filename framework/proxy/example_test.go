package proxy_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/svckit/svckit/examples/fileserver"
	pb "github.com/svckit/svckit/examples/fileserver/proto/fileserver/v1"
	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/proxy"
)

// A FileSrv instance registers itself; the proxy serves one address; a
// plain grpc-go client that knows only that address calls FileSrv.
func Example() {
	etcd, err := etcdtest.New(etcdtest.Options{}) // a real etcd, in-process
	if err != nil {
		log.Fatal(err)
	}
	defer etcd.Close()
	quiet := slog.New(slog.DiscardHandler)
	cli, err := naming.NewClient(naming.ClientConfig{Endpoints: etcd.Endpoints(), Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// A FileSrv instance: the App publishes fileserver.v1.FileService in
	// its registration record.
	dir, _ := os.MkdirTemp("", "proxy-example-")
	defer os.RemoveAll(dir)
	svc, err := fileserver.NewDirService(dir, 1<<20)
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	cfg := framework.DefaultConfig()
	cfg.Etcd = etcd.Endpoints()
	app, err := framework.New("fileserver", framework.WithConfig(cfg), framework.WithEtcd(cli),
		framework.WithoutSignals(), framework.WithPropagationDelay(0), framework.WithLogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	fileserver.Register(app.GRPC(), svc, fileserver.MakeEndpoints(svc))
	appDone := make(chan error, 1)
	go func() { appDone <- app.Run(ctx) }()
	defer func() { <-appDone }()
	<-app.Started()

	// The proxy.
	p, err := proxy.New(cli, proxy.WithLogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	proxyDone := make(chan error, 1)
	go func() { proxyDone <- p.Serve(ctx, lis) }()
	defer func() { <-proxyDone }()
	defer cancel() // stop the proxy, then the App

	// A client that knows only the proxy's address.
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	ls, err := pb.NewFileServiceClient(cc).List(cctx, &pb.ListRequest{})
	fmt.Println("List:", len(ls.GetEntries()), "entries, err", err)
	fmt.Println("routes:", p.Routes())
	err = cc.Invoke(cctx, "/nope.v1.Nowhere/Call", &emptypb.Empty{}, &emptypb.Empty{})
	fmt.Println(status.Code(err))
	// Output:
	// List: 0 entries, err <nil>
	// routes: map[fileserver.v1.FileService:fileserver]
	// Unimplemented
}
