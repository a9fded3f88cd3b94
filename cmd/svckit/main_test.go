package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/svckit/svckit/examples/fileserver"
	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/proc"
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

func TestNewServiceBuildsPassesItsTestsAndRegisters(t *testing.T) {
	checkout, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "greeter")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"new", "greeter", "--dir", dir, "--module", "example.com/greeter", "--svckit", checkout}, &out, &errb); err != nil {
		t.Fatalf("svckit new: %v\n%s%s", err, out.String(), errb.String())
	}
	for _, args := range [][]string{{"build", "./..."}, {"vet", "./..."}, {"test", "-count=1", "./..."}} {
		if err := goCmd(ctx, dir, args...); err != nil {
			t.Fatal(err)
		}
	}
	goroot, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	if o, err := exec.CommandContext(ctx, filepath.Join(strings.TrimSpace(string(goroot)), "bin", "gofmt"), "-l", dir).CombinedOutput(); err != nil || len(bytes.TrimSpace(o)) != 0 {
		t.Fatalf("gofmt -l: %v %s", err, o)
	}
	// `go generate` regenerates the same code without protoc.
	pbFile := filepath.Join(dir, "proto", "greeter", "v1", "greeter.pb.go")
	before, _ := os.ReadFile(pbFile)
	if err := goCmd(ctx, dir, "generate", "./..."); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(pbFile); !bytes.Equal(before, after) {
		t.Fatal("go generate changed the generated code")
	}

	// The generated server registers itself; svckit ls lists it and a
	// client reaches it.
	bin := filepath.Join(t.TempDir(), "greeter")
	if err := goCmd(ctx, dir, "build", "-o", bin, "./cmd/greeter"); err != nil {
		t.Fatal(err)
	}
	etcd := etcdtest.Start(t)
	srv, err := proc.Start(bin, []string{"--etcd", etcd.Endpoint(0)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Kill)
	if _, _, err := srv.WaitServing(30 * time.Second); err != nil {
		t.Fatalf("greeter: %v", err)
	}
	out.Reset()
	if err := run(ctx, []string{"ls", "--etcd", etcd.Endpoint(0)}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "greeter") {
		t.Fatalf("svckit ls does not list greeter:\n%s", out.String())
	}
	cc, err := framework.Dial(ctx, "greeter", framework.WithEtcd(naming.ClientConfig{Endpoints: etcd.Endpoints()}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var resp healthpb.HealthCheckResponse
	if err := cc.Invoke(ctx, "/grpc.health.v1.Health/Check", &healthpb.HealthCheckRequest{Service: "greeter.v1.GreeterService"}, &resp); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("greeter health through Dial: %v %v", resp.GetStatus(), err)
	}
}

func TestNewRefusesBadInputAndWritesNothing(t *testing.T) {
	base := t.TempDir()
	for _, args := range [][]string{
		{"new", "My Service"}, {"new", "1svc"}, {"new", "a/b"}, {"new", ".."},
		{"new", "greeter", "--module", "not a module"},
	} {
		var out, errb bytes.Buffer
		full := append(args, "--dir", filepath.Join(base, "out"), "--svckit", base)
		if err := run(context.Background(), full, &out, &errb); err == nil {
			t.Errorf("%v: have nil error", args)
		}
	}
	if _, err := os.Stat(filepath.Join(base, "out")); err == nil {
		t.Fatal("a refused svckit new wrote its directory")
	}
	full := filepath.Join(base, "full")
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"new", "greeter", "--dir", full, "--svckit", base}, &out, &errb); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("non-empty dir: %v", err)
	}
}
