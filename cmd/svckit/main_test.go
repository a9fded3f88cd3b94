package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/svckit/svckit/examples/fileserver"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
)

func TestMain(m *testing.M) {
	// The demo re-executes its own binary as FileSrv instances: here, this
	// test binary.
	if len(os.Args) > 1 && os.Args[1] == demoInstance {
		if err := fileserver.Main(os.Args[2:], "demo"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if binsDir != "" {
		os.RemoveAll(binsDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func TestDemoReportsNoFailures(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"demo", "--duration", "4s"}, &out, &errb); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errb.String())
	}
	for _, want := range []string{"SIGTERM fileserver-1", "exited with code 0", "SIGKILL fileserver-2", "failures: 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log("\n" + out.String())
}

func TestLsListsInstances(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, in := range []naming.Instance{
		{Service: "alpha", Addr: "127.0.0.1:1001", Metadata: naming.Metadata{Version: "1.0", Zone: "z1", Weight: 2}},
		{Service: "beta", Addr: "127.0.0.1:1002"},
	} {
		r, err := naming.NewRegistrar(cli, in, naming.WithTTL(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Register(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Deregister(context.Background()) })
	}
	if _, err := cli.Put(ctx, "services/alpha/garbage", "not json"); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"ls", "--etcd", c.Endpoint(0)}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	for _, want := range []string{"SERVICE", "alpha", "127.0.0.1:1001", "1.0", "z1", "beta", "127.0.0.1:1002"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if !strings.Contains(errb.String(), "skip services/alpha/garbage") {
		t.Errorf("garbage record not reported: %q", errb.String())
	}
	out.Reset()
	if err := run(ctx, []string{"ls", "--etcd", c.Endpoint(0), "--json", "alpha"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	var rows []instance
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("json: %v\n%s", err, out.String())
	}
	if len(rows) != 1 || rows[0].Addr != "127.0.0.1:1001" || rows[0].Weight != 2 || rows[0].TTLLeft <= 0 || rows[0].TTLLeft > 30*time.Second {
		t.Fatalf("rows: %+v", rows)
	}
}

func TestBadArguments(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"etcd", "--listen", "bad"}, {"demo", "--duration", "1s"}, {"ls", "a/b"}, {"xds", "--listen", "bad"}, {"xds", "--prefix", "/x"}} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, &out, &errb); err == nil {
			t.Errorf("%v: have nil error", args)
		}
	}
}

func TestLsShowsInstancesComeAndGo(t *testing.T) {
	c := etcdtest.Start(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	var kids []*child
	for i := range 3 {
		k, err := startChild(fmt.Sprintf("fs-%d", i), exe, c.Endpoint(0), root)
		if err != nil {
			t.Fatal(err)
		}
		kids = append(kids, k)
		t.Cleanup(func() { k.stop(syscall.SIGKILL) })
	}
	ls := func() string {
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{"ls", "--etcd", c.Endpoint(0), "fileserver"}, &out, &errb); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	have := ls()
	for _, k := range kids {
		if !strings.Contains(have, k.addr) {
			t.Fatalf("ls lacks %s:\n%s", k.addr, have)
		}
	}
	if code := kids[0].stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d", code)
	}
	have = ls()
	if strings.Contains(have, kids[0].addr) || strings.Count(have, "fileserver") != 2 {
		t.Fatalf("after SIGTERM of %s, ls shows:\n%s", kids[0].addr, have)
	}
	t.Logf("after SIGTERM:\n%s", have)
}
