package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/examples/fileserver"
	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/proc"
)

// demoInstance is the hidden command under which the demo re-executes this
// binary as a FileSrv instance.
const demoInstance = "__demo-fileserver"

// child is a FileSrv instance run as a child process.
type child struct {
	*proc.Proc
	name string
	addr string
}

func startChild(name, exe, etcd, root string) (*child, error) {
	p, err := proc.Start(exe, []string{demoInstance, "--etcd", etcd, "--root", root, "--ttl", "2s", "--listen", "127.0.0.1:0"}, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	addr, _, err := p.WaitServing(30 * time.Second)
	if err != nil {
		p.Kill()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &child{Proc: p, name: name, addr: addr}, nil
}

// stop ends the child with sig (killing it after 20s) and returns its exit
// code.
func (c *child) stop(sig syscall.Signal) int { return c.Stop(sig, 20*time.Second) }

// peers counts calls per server address.
type peers struct {
	mu sync.Mutex
	n  map[string]int
}

func (p *peers) add(a *peer.Peer) {
	if a.Addr == nil {
		return
	}
	p.mu.Lock()
	p.n[a.Addr.String()]++
	p.mu.Unlock()
}

func (p *peers) unary() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		var pr peer.Peer
		err := inv(ctx, method, req, reply, cc, append(opts, grpc.Peer(&pr))...)
		p.add(&pr)
		return err
	}
}

func (p *peers) stream() grpc.StreamClientInterceptor {
	return func(ctx context.Context, d *grpc.StreamDesc, cc *grpc.ClientConn, method string, s grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		pr := &peer.Peer{}
		cs, err := s(ctx, d, cc, method, append(opts, grpc.Peer(pr))...)
		if err != nil {
			return nil, err
		}
		return &countedStream{ClientStream: cs, p: p, pr: pr}, nil
	}
}

type countedStream struct {
	grpc.ClientStream
	p    *peers
	pr   *peer.Peer
	once sync.Once
}

func (s *countedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil || s.ClientStream.Context().Err() != nil {
		s.once.Do(func() { s.p.add(s.pr) })
	}
	return err
}

// demo is the state of one svckit demo: the embedded etcd, the FileSrv
// instances running as children, and the calls counted per instance.
type demo struct {
	stdout   io.Writer
	start    time.Time
	exe      string
	etcd     *etcdtest.Cluster
	root     string
	children []*child
	counts   *peers
}

// tally counts the demo's round trips.
type tally struct {
	ops, failures, retries int
	verified               int64
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("svckit demo", flag.ContinueOnError)
	duration := fs.Duration("duration", 20*time.Second, "how long the client runs (at least 3s)")
	if err := cli.Parse(fs, args, stdout); err != nil {
		return err
	}
	if *duration < 3*time.Second {
		return fmt.Errorf("--duration %s: at least 3s", *duration)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	d := &demo{stdout: stdout, start: time.Now(), exe: exe, counts: &peers{n: map[string]int{}}}
	defer d.close()
	if err := d.startFleet(); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, *duration+30*time.Second)
	defer cancel()
	cc, err := d.dial(dctx)
	if err != nil {
		return err
	}
	defer cc.Close()
	d.say("client dialled etcd:///services/fileserver (svckit_p2c_ewma); uploading and downloading with checksums")
	t, err := d.load(dctx, fileserver.NewClient(cc), *duration)
	if err != nil {
		return err
	}
	d.say("done: %d put+get round trips, %d retries, failures: %d, %d bytes verified", t.ops, t.retries, t.failures, t.verified)
	d.report()
	if t.failures > 0 {
		return fmt.Errorf("%d of %d operations failed", t.failures, t.ops)
	}
	return nil
}

func (d *demo) say(format string, a ...any) {
	fmt.Fprintf(d.stdout, "%6.2fs  %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, a...))
}

// startFleet starts the embedded etcd, the FileSrv root and three
// instances; close stops what it started.
func (d *demo) startFleet() error {
	etcd, err := etcdtest.New(etcdtest.Options{})
	if err != nil {
		return err
	}
	d.etcd = etcd
	if d.root, err = os.MkdirTemp("", "svckit-demo-"); err != nil {
		return err
	}
	d.say("etcd serving on %s (embedded); FileSrv root %s", etcd.Endpoint(0), d.root)
	for i := range 3 {
		c, err := startChild(fmt.Sprintf("fileserver-%d", i+1), d.exe, etcd.Endpoint(0), d.root)
		if err != nil {
			return err
		}
		d.children = append(d.children, c)
		d.say("%s serving on %s, registered in etcd", c.name, c.addr)
	}
	return nil
}

// close stops the instances still running, then etcd, and removes the root.
func (d *demo) close() {
	for _, c := range d.children {
		c.stop(syscall.SIGTERM)
	}
	if d.root != "" {
		_ = os.RemoveAll(d.root)
	}
	if d.etcd != nil {
		d.etcd.Close()
	}
}

// dial returns the client's conn to FileSrv, its calls counted per
// instance; its etcd client is closed with it.
func (d *demo) dial(ctx context.Context) (*grpc.ClientConn, error) {
	quiet := slog.New(slog.DiscardHandler)
	return client.Dial(ctx, naming.ClientConfig{Endpoints: d.etcd.Endpoints(), Logger: quiet}, "fileserver",
		client.WithLogger(quiet),
		client.WithUnaryInterceptor(d.counts.unary()),
		client.WithStreamInterceptor(d.counts.stream()),
		client.WithGRPCOption(grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(fileserver.MaxChunk+(64<<10)))))
}

// load makes round trips until duration has passed since the start, with a
// SIGTERM of one instance at 30% of it and a SIGKILL of another, which is
// replaced, at 55%. Both faults happen even on a machine too slow to reach
// them in time.
func (d *demo) load(ctx context.Context, fc *fileserver.Client, duration time.Duration) (tally, error) {
	var t tally
	stopAt := d.start.Add(duration)
	graceful, kill := d.start.Add(duration*3/10), d.start.Add(duration*55/100)
	for i := 0; time.Now().Before(stopAt) || !graceful.IsZero() || !kill.IsZero(); i++ {
		switch {
		case !graceful.IsZero() && time.Now().After(graceful):
			graceful = time.Time{}
			d.terminate()
		case !kill.IsZero() && time.Now().After(kill):
			kill = time.Time{}
			if err := d.killAndReplace(); err != nil {
				return t, err
			}
		}
		n, r, err := roundTrip(ctx, fc, i)
		t.ops++
		t.retries += r
		if err != nil {
			t.failures++
			d.say("operation %d failed: %v", i, err)
			continue
		}
		t.verified += n
	}
	return t, nil
}

// terminate stops the oldest instance with SIGTERM.
func (d *demo) terminate() {
	c := d.children[0]
	d.say("SIGTERM %s (graceful: deregister, drain, exit)", c.name)
	code := c.stop(syscall.SIGTERM)
	d.say("%s exited with code %d", c.name, code)
	d.children = d.children[1:]
}

// killAndReplace kills the oldest instance with SIGKILL and starts another.
func (d *demo) killAndReplace() error {
	c := d.children[0]
	d.say("SIGKILL %s (abrupt: its record stays until the lease expires)", c.name)
	c.stop(syscall.SIGKILL)
	d.children = d.children[1:]
	nc, err := startChild(c.name+"-restarted", d.exe, d.etcd.Endpoint(0), d.root)
	if err != nil {
		return err
	}
	d.children = append(d.children, nc)
	d.say("%s serving on %s", nc.name, nc.addr)
	return nil
}

// report prints the calls each instance served.
func (d *demo) report() {
	d.counts.mu.Lock()
	defer d.counts.mu.Unlock()
	addrs := make([]string, 0, len(d.counts.n))
	total := 0
	for a, n := range d.counts.n {
		addrs = append(addrs, a)
		total += n
	}
	slices.Sort(addrs)
	for _, a := range addrs {
		fmt.Fprintf(d.stdout, "        %-22s %5d calls (%4.1f%%)\n", a, d.counts.n[a], 100*float64(d.counts.n[a])/float64(max(total, 1)))
	}
}

// roundTrip uploads a random file, downloads it and compares; an upload
// cut by a dying instance is sent again (uploads are atomic, so a retry is
// safe). It returns the bytes verified and the retries made.
func roundTrip(ctx context.Context, c *fileserver.Client, i int) (int64, int, error) {
	size := 64<<10 + i%16*(60<<10)
	data := make([]byte, size)
	_, _ = rand.Read(data)
	h := sha256.Sum256(data)
	sum := hex.EncodeToString(h[:])
	path := fmt.Sprintf("demo/file-%03d.bin", i%50)
	retries := 0
	for attempt := 0; ; attempt++ {
		_, err := c.Put(ctx, path, bytes.NewReader(data), int64(size), sum, nil)
		if err == nil {
			break
		}
		if code := status.Code(err); attempt == 4 || code != codes.Unavailable && code != codes.Canceled && code != codes.Unknown {
			return 0, retries, fmt.Errorf("put %s: %w", path, err)
		}
		retries++
	}
	var got bytes.Buffer
	if _, err := c.Get(ctx, path, &got, nil); err != nil {
		return 0, retries, fmt.Errorf("get %s: %w", path, err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		return 0, retries, fmt.Errorf("get %s: bytes differ", path)
	}
	return int64(size), retries, nil
}
