// Command xdsclient is a plain grpc-go client of FileSrv: it imports
// grpc-go, its xds package and the FileSrv stubs, and of svckit only
// framework/cli, which reads the command line as every svckit command does
// and imports nothing but the standard library. Given
// a bootstrap file (GRPC_XDS_BOOTSTRAP) naming svckit's xDS server, it
// uploads a file through xds:///fileserver, downloads it and checks it,
// then calls Stat in a loop for a while, printing the instance that
// answered each call:
//
//	uploaded sha256=…
//	downloaded ok bytes=…
//	call peer=127.0.0.1:40001 at=1700000000000000000
//	done calls=… failures=…
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	_ "google.golang.org/grpc/xds" // the xds:/// resolver and balancers

	fsv1 "github.com/svckit/svckit/examples/fileserver/proto/fileserver/v1"
	"github.com/svckit/svckit/framework/cli"
)

func main() { cli.Main("xdsclient", run) }

func run(args []string) error {
	fs := flag.NewFlagSet("xdsclient", flag.ContinueOnError)
	target := fs.String("target", "xds:///fileserver", "gRPC target")
	size := fs.Int("size", 4<<20, "bytes to upload and download")
	path := fs.String("path", "xds/check.bin", "remote path")
	loop := fs.Duration("loop", 10*time.Second, "how long to call Stat after the round trip")
	pause := fs.Duration("pause", 2*time.Millisecond, "pause between Stat calls")
	if err := cli.Parse(fs, args, os.Stdout); err != nil {
		return err
	}

	cc, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	c := fsv1.NewFileServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	data := make([]byte, *size)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	up, err := c.Upload(ctx, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if err := up.Send(&fsv1.UploadRequest{Msg: &fsv1.UploadRequest_Header{Header: &fsv1.UploadHeader{
		Path: *path, Size: int64(len(data)), Sha256: hex.EncodeToString(sum[:])}}}); err != nil {
		return fmt.Errorf("upload header: %w", err)
	}
	for off := 0; off < len(data); off += 1 << 20 {
		if err := up.Send(&fsv1.UploadRequest{Msg: &fsv1.UploadRequest_Chunk{Chunk: data[off:min(off+1<<20, len(data))]}}); err != nil {
			return fmt.Errorf("upload chunk: %w", err)
		}
	}
	res, err := up.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	fmt.Printf("uploaded sha256=%s\n", res.GetSha256())

	down, err := c.Download(ctx, &fsv1.DownloadRequest{Path: *path})
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	var got bytes.Buffer
	for {
		m, err := down.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("download: %w", err)
		}
		got.Write(m.GetChunk())
	}
	if !bytes.Equal(got.Bytes(), data) {
		return fmt.Errorf("download: %d bytes differ from the %d uploaded", got.Len(), len(data))
	}
	fmt.Printf("downloaded ok bytes=%d\n", got.Len())

	statLoop(c, *path, *loop, *pause)
	return nil
}

// statLoop calls Stat of path for loop, pausing between calls, and prints
// each call's peer or error, then the count of calls and failures.
func statLoop(c fsv1.FileServiceClient, path string, loop, pause time.Duration) {
	calls, failures := 0, 0
	end := time.Now().Add(loop)
	for time.Now().Before(end) {
		var p peer.Peer
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.Stat(cctx, &fsv1.StatRequest{Path: path}, grpc.Peer(&p))
		ccancel()
		calls++
		if err != nil {
			failures++
			fmt.Printf("call err=%q at=%d\n", err, time.Now().UnixNano())
		} else {
			fmt.Printf("call peer=%s at=%d\n", p.Addr, time.Now().UnixNano())
		}
		time.Sleep(pause)
	}
	fmt.Printf("done calls=%d failures=%d\n", calls, failures)
}
