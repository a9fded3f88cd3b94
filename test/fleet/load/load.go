// Package load drives the fleet tier's mix of calls over plain gRPC
// connections: long FileSrv downloads read slowly, so that each stream
// stays open for seconds, beside short unary calls to FileSrv (Stat) and to
// a second service (the test service's Sleep). It records every call's
// outcome and the instance that answered it.
//
// It imports grpc-go, the FileSrv stubs and well-known protobuf types only,
// so that the plain xDS client (testdata/plainclient) can use it without
// linking any of svckit's resolvers or balancers.
package load

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	fsv1 "github.com/svckit/svckit/examples/fileserver/proto/fileserver/v1"
)

// SleepMethod is the second service's unary method (internal/testsvc).
const SleepMethod = "/svckit.test.Test/Sleep"

// Mix is what one run sends. Every loop is bounded by Duration and by
// MaxCalls per worker.
type Mix struct {
	Path     string        // the file to download, uploaded beforehand
	SHA256   string        // its checksum, hex
	Streams  int           // concurrent downloaders
	Hold     time.Duration // how long each download is held open, read slowly
	Unary    int           // concurrent Stat callers, and as many Sleep callers
	Pause    time.Duration // between one worker's unary calls
	Duration time.Duration // how long the run lasts
	MaxCalls int           // per worker
	Timeout  time.Duration // per unary call; a download gets Hold + Timeout
}

// Method is the outcome of one method's calls.
type Method struct {
	OK     int            `json:"ok"`
	Failed int            `json:"failed"`
	Peers  map[string]int `json:"peers"`  // successful calls per instance
	Errors []string       `json:"errors"` // the first few failures
}

// Report is the outcome of a run, per method: "download", "stat", "sleep".
type Report map[string]*Method

// Failed is the number of failed calls of every method.
func (r Report) Failed() int {
	n := 0
	for _, m := range r {
		n += m.Failed
	}
	return n
}

// Summary is one line per method.
func (r Report) Summary() string {
	s := ""
	for _, k := range []string{"download", "stat", "sleep"} {
		if m := r[k]; m != nil {
			s += fmt.Sprintf("%s: ok=%d failed=%d peers=%v errors=%q\n", k, m.OK, m.Failed, m.Peers, m.Errors)
		}
	}
	return s
}

type recorder struct {
	mu sync.Mutex
	r  Report
}

func (rec *recorder) add(method string, p *peer.Peer, err error) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	m := rec.r[method]
	if m == nil {
		m = &Method{Peers: map[string]int{}}
		rec.r[method] = m
	}
	if err != nil {
		m.Failed++
		if len(m.Errors) < 5 {
			m.Errors = append(m.Errors, err.Error())
		}
		return
	}
	m.OK++
	if p.Addr != nil {
		m.Peers[p.Addr.String()]++
	}
}

// Run sends mix over files (FileSrv) and second (the test service) until
// mix.Duration has passed or ctx ends, then waits for the calls in flight
// and returns what happened. Either connection may be nil to leave its
// calls out.
func Run(ctx context.Context, files, second *grpc.ClientConn, mix Mix) Report {
	rec := &recorder{r: Report{}}
	ctx, cancel := context.WithTimeout(ctx, mix.Duration)
	defer cancel()
	var wg sync.WaitGroup
	loop := func(call func() error) {
		wg.Go(func() {
			for i := 0; i < mix.MaxCalls && ctx.Err() == nil; i++ {
				if err := call(); err != nil && ctx.Err() != nil {
					return // the run ended mid-call: not a failure
				}
				if mix.Pause > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(mix.Pause):
					}
				}
			}
		})
	}
	if files != nil {
		fc := fsv1.NewFileServiceClient(files)
		for range mix.Streams {
			loop(func() error {
				var p peer.Peer
				err := download(ctx, fc, mix, &p)
				if ctx.Err() == nil || err == nil {
					rec.add("download", &p, err)
				}
				return err
			})
		}
		for range mix.Unary {
			loop(func() error {
				var p peer.Peer
				cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), mix.Timeout)
				_, err := fc.Stat(cctx, &fsv1.StatRequest{Path: mix.Path}, grpc.Peer(&p))
				ccancel()
				rec.add("stat", &p, err)
				return nil
			})
		}
	}
	if second != nil {
		for range mix.Unary {
			loop(func() error {
				var p peer.Peer
				cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), mix.Timeout)
				err := second.Invoke(cctx, SleepMethod, durationpb.New(time.Millisecond), new(emptypb.Empty), grpc.Peer(&p))
				ccancel()
				rec.add("sleep", &p, err)
				return nil
			})
		}
	}
	wg.Wait()
	return rec.r
}

// download reads mix.Path slowly enough to hold the stream open for about
// mix.Hold, and checks the bytes against mix.SHA256. It is not cut short by
// the end of the run: a download that started finishes.
func download(ctx context.Context, fc fsv1.FileServiceClient, mix Mix, p *peer.Peer) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mix.Hold+mix.Timeout)
	defer cancel()
	stream, err := fc.Download(cctx, &fsv1.DownloadRequest{Path: mix.Path}, grpc.Peer(p))
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	start, h := time.Now(), sha256.New()
	var size, got int64
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("download after %d bytes: %w", got, err)
		}
		if info := m.GetInfo(); info != nil {
			size = info.GetInfo().GetSize()
		}
		c := m.GetChunk()
		h.Write(c)
		got += int64(len(c))
		if size > 0 { // pace the reads: byte n is read at n/size of Hold
			due := start.Add(time.Duration(float64(mix.Hold) * float64(got) / float64(size)))
			time.Sleep(time.Until(due))
		}
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != mix.SHA256 {
		return fmt.Errorf("download: %d bytes, sha256 %s, want %s", got, sum, mix.SHA256)
	}
	return nil
}
