// Command plainclient is the fleet tier's plain gRPC client: grpc-go, its
// xds package and the FileSrv stubs, no svckit resolver or balancer. It
// dials two targets — xds:///NAME through `svckit xds`, or the address of
// `svckit proxy` — waits until each answers a call, prints "ready", runs
// the load mix and prints its report as one JSON line:
//
//	ready
//	report {"download":{…},"stat":{…},"sleep":{…}}
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	_ "google.golang.org/grpc/xds" // the xds:/// resolver and balancers

	fsv1 "github.com/svckit/svckit/examples/fileserver/proto/fileserver/v1"
	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/test/fleet/load"
)

func main() { cli.Main("plainclient", run) }

func run(args []string) error {
	fs := flag.NewFlagSet("plainclient", flag.ContinueOnError)
	files := fs.String("files", "xds:///fileserver", "FileSrv target")
	second := fs.String("second", "xds:///sleeper", "the second service's target")
	var mix load.Mix
	fs.StringVar(&mix.Path, "path", "", "file to download")
	fs.StringVar(&mix.SHA256, "sha256", "", "its checksum")
	fs.IntVar(&mix.Streams, "streams", 2, "concurrent downloads")
	fs.DurationVar(&mix.Hold, "hold", 3*time.Second, "how long a download is held open")
	fs.IntVar(&mix.Unary, "unary", 2, "concurrent callers per unary method")
	fs.DurationVar(&mix.Pause, "pause", 5*time.Millisecond, "pause between unary calls")
	fs.DurationVar(&mix.Duration, "duration", 10*time.Second, "how long the run lasts")
	fs.IntVar(&mix.MaxCalls, "max-calls", 5000, "calls per worker at most")
	fs.DurationVar(&mix.Timeout, "timeout", 5*time.Second, "per unary call")
	if err := cli.Parse(fs, args, os.Stdout); err != nil {
		return err
	}

	dial := func(target string) (*grpc.ClientConn, error) {
		return grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	fc, err := dial(*files)
	if err != nil {
		return err
	}
	defer fc.Close()
	sc, err := dial(*second)
	if err != nil {
		return err
	}
	defer sc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_, err = fsv1.NewFileServiceClient(fc).Stat(ctx, &fsv1.StatRequest{Path: mix.Path}, grpc.WaitForReady(true))
	if err == nil {
		err = sc.Invoke(ctx, load.SleepMethod, durationpb.New(0), new(emptypb.Empty), grpc.WaitForReady(true))
	}
	cancel()
	if err != nil {
		return fmt.Errorf("first calls: %w", err)
	}
	fmt.Println("ready")
	b, err := json.Marshal(load.Run(context.Background(), fc, sc, mix))
	if err != nil {
		return err
	}
	fmt.Printf("report %s\n", b)
	return nil
}
