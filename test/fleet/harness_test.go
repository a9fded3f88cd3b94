package fleet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/svckit/svckit/examples/fileserver"
	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/proc"
	"github.com/svckit/svckit/test/fleet/load"
)

const (
	ttl      = 2 * time.Second
	fileSize = 8 << 20 // 8 chunks: a download is paced over eight reads
	filePath = "fleet/blob.bin"
)

// instance is a server of the fleet, running as a child process.
type instance struct {
	*proc.Proc
	addr string
}

// fleet is one etcd, three FileSrv instances on a shared root and two
// instances of a second service ("sleeper"), plus the file every download
// reads.
type fleet struct {
	t        *testing.T
	etcd     *etcdtest.Cluster
	etcdArgs []string // how every process reaches etcd: endpoints, TLS
	etcdCfg  naming.ClientConfig
	root     string
	files    []*instance
	sleepers []*instance
	sum      string // sha256 of the file, hex
}

// newFleet starts the fleet on c, reached with args (the --etcd flag and
// any TLS flags) by the processes and with cfg by the test itself.
func newFleet(t *testing.T, c *etcdtest.Cluster, args []string, cfg naming.ClientConfig) *fleet {
	t.Helper()
	f := &fleet{t: t, etcd: c, etcdArgs: args, etcdCfg: cfg, root: t.TempDir()}
	for range 3 {
		f.files = append(f.files, f.startFiles())
	}
	for range 2 {
		f.sleepers = append(f.sleepers, f.startService("sleeper"))
	}
	f.waitRecords("fileserver", 3)
	f.waitRecords("sleeper", 2)
	f.upload()
	return f
}

// serverArgs are the flags of every server of the fleet.
func (f *fleet) serverArgs() []string {
	return append([]string{"--ttl", ttl.String(), "--listen", "127.0.0.1:0", "--shutdown-timeout", "20s"}, f.etcdArgs...)
}

func (f *fleet) startFiles() *instance {
	f.t.Helper()
	return f.start(bins["fileserver"], append(f.serverArgs(), "--root", f.root), nil)
}

// startService starts an instance of the test service registered as name.
func (f *fleet) startService(name string) *instance {
	f.t.Helper()
	return f.start(bins["sleeper"], f.serverArgs(), []string{"FLEET_SERVICE=" + name})
}

func (f *fleet) start(bin string, args, env []string) *instance {
	f.t.Helper()
	i := &instance{Proc: proc.StartT(f.t, bin, args, env)}
	var err error
	if i.addr, _, err = i.WaitServing(30 * time.Second); err != nil {
		f.t.Fatal(err)
	}
	return i
}

// term stops i with SIGTERM and fails the test unless it exits 0.
func (f *fleet) term(i *instance) {
	f.t.Helper()
	if code := i.Stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		f.t.Fatalf("instance %s: exit %d:\n%s", i.addr, code, i.Output())
	}
}

// restart replaces (*list)[n] with a new instance from start: the new one
// serves first, then the old one stops, as a rolling restart does.
func (f *fleet) restart(list []*instance, n int, start func() *instance) {
	f.t.Helper()
	next := start()
	f.term(list[n])
	list[n] = next
}

// client is an etcd client of the test's own.
func (f *fleet) client() *clientv3.Client {
	f.t.Helper()
	cli, err := naming.NewClient(f.etcdCfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { cli.Close() })
	return cli
}

// waitRecords waits until etcd holds n records of service.
func (f *fleet) waitRecords(service string, n int) {
	f.t.Helper()
	cli := f.client()
	key := naming.DefaultPrefix + service + "/"
	poll.Until(f.t, 30*time.Second, fmt.Sprintf("%d records of %s", n, service), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, key, clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == int64(n)
	})
}

// dial is client.Dial of service with the fleet's etcd configuration.
func (f *fleet) dial(service string, opts ...client.Option) *grpc.ClientConn {
	f.t.Helper()
	cc, err := client.Dial(context.Background(), f.etcdCfg, service, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { cc.Close() })
	return cc
}

// upload puts the file every download reads.
func (f *fleet) upload() {
	f.t.Helper()
	data := make([]byte, fileSize)
	_, _ = rand.Read(data)
	s := sha256.Sum256(data)
	f.sum = hex.EncodeToString(s[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := fileserver.NewClient(f.dial("fileserver", client.WithGRPCOption(fileserver.ClientWindows()...)))
	if _, err := c.Put(ctx, filePath, bytes.NewReader(data), int64(len(data)), f.sum, nil); err != nil {
		f.t.Fatalf("upload: %v", err)
	}
}

// mix is the load of a run lasting d: two downloads held open for 3 s
// each, always in flight, beside two callers of each unary method.
func (f *fleet) mix(d time.Duration) load.Mix {
	return load.Mix{Path: filePath, SHA256: f.sum, Streams: 2, Hold: 3 * time.Second,
		Unary: 2, Pause: 5 * time.Millisecond, Duration: d, MaxCalls: 20000, Timeout: 5 * time.Second}
}

// driver runs a load mix through one balancing mode; the run starts once
// the call returns, and the report arrives on the channel.
type driver func(t *testing.T, mix load.Mix) <-chan load.Report

// thick drives the load in-process through client.Dial connections.
func (f *fleet) thick() driver {
	fc := f.dial("fileserver")
	sc := f.dial("sleeper")
	return func(t *testing.T, mix load.Mix) <-chan load.Report {
		out := make(chan load.Report, 1)
		go func() { out <- load.Run(context.Background(), fc, sc, mix) }()
		return out
	}
}

// plain drives the load from plainclient, a plain grpc-go client, with
// targets files and second and the environment env.
func plain(files, second string, env []string) driver {
	return func(t *testing.T, mix load.Mix) <-chan load.Report {
		t.Helper()
		args := []string{"-files", files, "-second", second, "-path", mix.Path, "-sha256", mix.SHA256,
			"-streams", strconv.Itoa(mix.Streams), "-hold", mix.Hold.String(), "-unary", strconv.Itoa(mix.Unary),
			"-pause", mix.Pause.String(), "-duration", mix.Duration.String(), "-max-calls", strconv.Itoa(mix.MaxCalls),
			"-timeout", mix.Timeout.String()}
		p := proc.StartT(t, bins["plainclient"], args, env)
		if _, err := p.WaitFor(regexp.MustCompile(`(?m)^ready$`), 60*time.Second); err != nil {
			t.Fatal(err)
		}
		out := make(chan load.Report, 1)
		go func() {
			defer close(out)
			if _, err := p.Wait(mix.Duration + mix.Hold + 30*time.Second); err != nil {
				p.Kill()
			}
			r, err := parseReport(p.Output())
			if err != nil {
				t.Errorf("plainclient: %v\n%s", err, p.Output())
				return
			}
			out <- r
		}()
		return out
	}
}

func parseReport(out string) (load.Report, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if b, ok := strings.CutPrefix(sc.Text(), "report "); ok {
			var r load.Report
			return r, json.Unmarshal([]byte(b), &r)
		}
	}
	return nil, fmt.Errorf("no report line")
}

// wait returns the report of a run, failing t if none comes.
func wait(t *testing.T, ch <-chan load.Report, d time.Duration) load.Report {
	t.Helper()
	select {
	case r, ok := <-ch:
		if !ok {
			t.Fatal("the load run gave no report")
		}
		return r
	case <-time.After(d):
		t.Fatalf("no report within %s", d)
		return nil
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// servingRE matches the line `svckit xds` and `svckit proxy` print when they serve.
var servingRE = regexp.MustCompile(`serving on (\S+)`)

// startCmd runs `svckit args…` and waits for its serving line.
func startCmd(t *testing.T, args ...string) (*proc.Proc, string) {
	t.Helper()
	p := proc.StartT(t, bins["svckit"], args, nil)
	m, err := p.WaitFor(servingRE, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return p, m[1]
}
