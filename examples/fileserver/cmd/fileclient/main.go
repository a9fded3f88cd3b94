// Command fileclient talks to FileSrv through a client.Client, with the etcd
// client flags of every svckit command (--etcd, --etcd-user, --etcd-ca,
// --etcd-cert, --etcd-key, --prefix and their variables):
//
//	fileclient [flags] put LOCAL REMOTE | get REMOTE LOCAL | ls [DIR] | stat REMOTE | rm REMOTE
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/svckit/svckit/examples/fileserver"
	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/naming"
)

const usage = "usage: fileclient [--etcd ADDRS] [--etcd-ca F --etcd-cert F --etcd-key F] [--prefix P] put LOCAL REMOTE | get REMOTE LOCAL | ls [DIR] | stat REMOTE | rm REMOTE"

// main exits 2 after a bad command line, printed on one line, 0 after -h,
// and 1 after any other error (cli.Main).
func main() { cli.Main("fileclient", run) }

func run(args []string) error {
	cfg, timeout, cmd, err := parseArgs(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cli, err := connectEtcd(ctx, cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	c, err := client.NewFromEtcd(cli, client.WithPrefix(cfg.Prefix), client.WithGRPCOption(grpcCallSizes()...))
	if err != nil {
		return err
	}
	defer c.Close()
	cc, err := c.Dial(ctx, "fileserver")
	if err != nil {
		return err
	}
	defer cc.Close()
	return do(ctx, fileserver.NewClient(cc), cmd)
}

// parseArgs reads the environment, then args: the configuration, the
// bound on the whole command, and the command. It returns flag.ErrHelp
// after -h.
func parseArgs(args []string) (framework.Config, time.Duration, []string, error) {
	cfg := framework.DefaultConfig()
	if err := cfg.ApplyEnv(nil); err != nil {
		return cfg, 0, nil, err
	}
	fs := flag.NewFlagSet("fileclient", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), usage); fs.PrintDefaults() }
	cfg.RegisterEtcdFlags(fs)
	timeout := fs.Duration("timeout", 10*time.Minute, "bound on the whole command")
	if err := cli.Parse(fs, args, os.Stdout); err != nil {
		return cfg, 0, nil, err
	}
	if fs.NArg() == 0 {
		return cfg, 0, nil, &cli.UsageError{Cmd: fs.Name(), Err: errors.New("no command given")}
	}
	return cfg, *timeout, fs.Args(), nil
}

// connectEtcd returns an etcd client of cfg that has answered: reaching
// etcd first, within a bound, shows a refusal (no answer, a TLS handshake
// refused) as such rather than as no instance.
func connectEtcd(ctx context.Context, cfg framework.Config) (*clientv3.Client, error) {
	ec, err := cfg.EtcdClientConfig()
	if err != nil {
		return nil, err
	}
	ec.DialTimeout, ec.LogLevel = 3*time.Second, slog.LevelError
	ec.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	cli, err := naming.NewClient(ec)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := naming.Ping(pctx, cli); err != nil {
		_ = cli.Close()
		return nil, err
	}
	// Ping counts a denied read as an answer; a role that cannot read the
	// prefix would otherwise show only as "no ready instance".
	if _, err := cli.Get(pctx, cfg.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("etcd %v: read %s: %w", cli.Endpoints(), cfg.Prefix, err)
	}
	return cli, nil
}

// do runs the command a with c.
func do(ctx context.Context, c *fileserver.Client, a []string) error {
	switch {
	case a[0] == "put" && len(a) == 3:
		return put(ctx, c, a[1], a[2])
	case a[0] == "get" && len(a) == 3:
		return get(ctx, c, a[1], a[2])
	case a[0] == "ls" && len(a) <= 2:
		return ls(ctx, c, a[1:])
	case a[0] == "stat" && len(a) == 2:
		info, sum, err := c.Stat(ctx, a[1])
		if err != nil {
			return err
		}
		fmt.Printf("%s %d %s %s\n", info.Path, info.Size, info.ModTime.UTC().Format(time.RFC3339), sum)
		return nil
	case a[0] == "rm" && len(a) == 2:
		return c.Delete(ctx, a[1])
	}
	return &cli.UsageError{Cmd: "fileclient", Err: fmt.Errorf("unknown command or wrong arguments: %s", strings.Join(a, " "))}
}

// ls lists the directory dir names (the root if none).
func ls(ctx context.Context, c *fileserver.Client, dir []string) error {
	es, err := c.List(ctx, strings.Join(dir, ""))
	if err != nil {
		return err
	}
	for _, e := range es {
		kind := "f"
		if e.Dir {
			kind = "d"
		}
		fmt.Printf("%s %12d %s %s\n", kind, e.Size, e.ModTime.UTC().Format(time.RFC3339), e.Path)
	}
	return nil
}

func put(ctx context.Context, c *fileserver.Client, local, remote string) error {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	p := newProgress("put "+remote, size)
	info, err := c.Put(ctx, remote, f, size, hex.EncodeToString(h.Sum(nil)), func(n int64) { p.update(n) })
	p.done()
	if err != nil {
		return err
	}
	fmt.Printf("%s %d bytes\n", info.Path, info.Size)
	return nil
}

// get writes to a temporary file beside local and renames it once the
// checksum is verified: no partial file appears under the local name.
func get(ctx context.Context, c *fileserver.Client, remote, local string) error {
	tmp, err := os.CreateTemp(filepath.Dir(local), "."+filepath.Base(local)+".part-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	p := newProgress("get "+remote, 0)
	info, err := c.Get(ctx, remote, tmp, func(done, total int64) { p.total = total; p.update(done) })
	p.done()
	if err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), local); err != nil {
		return err
	}
	fmt.Printf("%s %d bytes\n", local, info.Size)
	return nil
}

// progress draws a bar on stderr when it is a terminal, and nothing
// otherwise.
type progress struct {
	label string
	total int64
	tty   bool
	last  time.Time
}

func newProgress(label string, total int64) *progress {
	fi, err := os.Stderr.Stat()
	return &progress{label: label, total: total, tty: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

func (p *progress) update(n int64) {
	if !p.tty || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	pct := 0.0
	if p.total > 0 {
		pct = 100 * float64(n) / float64(p.total)
	}
	bar := strings.Repeat("#", int(pct/5)) + strings.Repeat(".", 20-int(pct/5))
	fmt.Fprintf(os.Stderr, "\r%s [%s] %5.1f%% %d/%d", p.label, bar, pct, n, p.total)
}

func (p *progress) done() {
	if p.tty && !p.last.IsZero() {
		fmt.Fprintln(os.Stderr)
	}
}

// grpcCallSizes lets a download chunk through.
func grpcCallSizes() []grpc.DialOption {
	return append(fileserver.ClientWindows(), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(fileserver.MaxChunk+(64<<10))))
}
