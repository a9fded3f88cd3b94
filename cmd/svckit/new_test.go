package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/logsink"
)

// TestNewServiceBuildsPassesItsTestsAndRegisters renders a service, checks
// that it builds, vets, is gofmt'ed and regenerates its own code, and then
// runs the commands of its README as written, in order: the development
// etcd through `go tool svckit`, the service, `svckit ls`, the tests.
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
	for _, args := range [][]string{{"build", "./..."}, {"vet", "./..."}} {
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
	// A bad flag: one line and exit 2, as every svckit command.
	bin := filepath.Join(t.TempDir(), "greeter")
	if err := goCmd(ctx, dir, "build", "-o", bin, "./cmd/greeter"); err != nil {
		t.Fatal(err)
	}
	bad := exec.CommandContext(ctx, bin, "-x")
	o, err := bad.CombinedOutput()
	if want := "greeter: flag provided but not defined: -x (see greeter -h)\n"; bad.ProcessState.ExitCode() != 2 || string(o) != want {
		t.Errorf("greeter -x: exit %d (%v), output %q; want exit 2, %q", bad.ProcessState.ExitCode(), err, o, want)
	}
	runReadme(ctx, t, dir, "greeter")
}

// runReadme runs the command lines of the first sh block of dir/README.md
// as written, each through bash in dir, with two changes so the test can
// run beside others: `svckit etcd` gets `--listen` on a free port, and
// SVCKIT_ETCD_ENDPOINTS names that port for every other command. A line
// that starts a server (`svckit etcd`, `go run ./cmd/NAME`) runs in the
// background until its ready line; the servers are stopped with SIGTERM at
// the end, and must stop cleanly. A line the test does not know fails it.
func runReadme(ctx context.Context, t *testing.T, dir, name string) {
	t.Helper()
	lines := readmeCommands(t, filepath.Join(dir, "README.md"))
	etcdAddr := freeAddr(t)
	env := append(os.Environ(), "SVCKIT_ETCD_ENDPOINTS="+etcdAddr)
	svckitRE := regexp.MustCompile(`^go (tool svckit|run \S*/cmd/svckit) (etcd|ls)$`)
	var servers []*shellProc
	stopAll := func() {
		for i := len(servers) - 1; i >= 0; i-- {
			servers[i].stop(t)
		}
		servers = nil
	}
	defer stopAll()
	seen := map[string]bool{}
	for _, line := range lines {
		// "A & B": A runs in the background.
		parts := strings.Split(line, "&")
		for i, part := range parts {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			background := i < len(parts)-1
			m := svckitRE.FindStringSubmatch(part)
			switch {
			case m != nil && m[2] == "etcd" && background:
				seen["etcd"] = true
				p := startShell(t, dir, part+" --listen "+etcdAddr, env)
				servers = append(servers, p)
				p.waitFor(t, regexp.MustCompile(`etcd serving on `+regexp.QuoteMeta(etcdAddr)), 3*time.Minute)
			case part == "go run ./cmd/"+name:
				seen["service"] = true
				p := startShell(t, dir, part, env)
				servers = append(servers, p)
				p.waitFor(t, regexp.MustCompile(`msg=serving .*addr=(\S+)`), 3*time.Minute)
				// Registered: a client finds it by name through etcd.
				cc, err := client.Dial(ctx, naming.ClientConfig{Endpoints: []string{etcdAddr}}, name)
				if err != nil {
					t.Fatal(err)
				}
				var resp healthpb.HealthCheckResponse
				err = cc.Invoke(ctx, "/grpc.health.v1.Health/Check", &healthpb.HealthCheckRequest{Service: name + ".v1." + strings.ToUpper(name[:1]) + name[1:] + "Service"}, &resp)
				_ = cc.Close()
				if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					t.Fatalf("%s health through Dial: %v %v", name, resp.GetStatus(), err)
				}
			case m != nil && m[2] == "ls" && !background:
				seen["ls"] = true
				o := runShell(ctx, t, dir, part, env)
				if !strings.Contains(o, name) {
					t.Fatalf("%q does not list %s:\n%s", part, name, o)
				}
			case part == "go test ./..." && !background:
				seen["test"] = true
				runShell(ctx, t, dir, part, env)
			default:
				t.Fatalf("README.md: the test does not know how to run %q", part)
			}
		}
	}
	if len(seen) != 4 {
		t.Errorf("README.md ran %v; want etcd, service, ls and test", seen)
	}
	for i := len(servers) - 1; i >= 0; i-- {
		out := servers[i].stop(t)
		if strings.Contains(servers[i].line, "etcd") && !strings.Contains(out, "etcd stopping") {
			t.Errorf("%q did not stop cleanly:\n%s", servers[i].line, out)
		}
		if strings.Contains(servers[i].line, "./cmd/") && (!strings.Contains(out, "msg=deregistered") || !strings.Contains(out, "msg=stopped service="+name+` cause="signals: received terminated"`)) {
			t.Errorf("%q did not stop cleanly:\n%s", servers[i].line, out)
		}
	}
	servers = nil
}

// readmeCommands returns the lines of the first sh block of a README,
// comments and blank lines dropped.
func readmeCommands(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case !in && l == "```sh":
			in = true
		case in && l == "```":
			return lines
		case in:
			if i := strings.Index(l, "#"); i >= 0 {
				l = l[:i]
			}
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
	}
	t.Fatalf("%s: no closed sh block", path)
	return nil
}

// freeAddr returns a 127.0.0.1 address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// shellProc is a command line run by bash in a process group of its own,
// so that a signal reaches the program behind `go run` or `go tool`.
type shellProc struct {
	line string
	cmd  *exec.Cmd
	out  logsink.Buffer
	done chan struct{}
}

func startShell(t *testing.T, dir, line string, env []string) *shellProc {
	t.Helper()
	p := &shellProc{line: line, cmd: exec.Command("bash", "-c", line), done: make(chan struct{})}
	p.cmd.Dir, p.cmd.Env = dir, env
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.WaitDelay = 20 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait returns once every process holding the output has exited.
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p
}

// waitFor polls the output until re matches, failing t if the line's
// processes exit first or d passes.
func (p *shellProc) waitFor(t *testing.T, re *regexp.Regexp, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !re.MatchString(p.out.String()) {
		select {
		case <-p.done:
			t.Fatalf("%q exited before %s:\n%s", p.line, re, p.out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q: no %s within %s:\n%s", p.line, re, d, p.out.String())
		}
	}
}

// stop sends SIGTERM to the line's process group, waits for all of it
// to exit (SIGKILL after 30s), and returns the output.
func (p *shellProc) stop(t *testing.T) string {
	t.Helper()
	select {
	case <-p.done:
		return p.out.String()
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Errorf("%q still running 30s after SIGTERM", p.line)
	}
	return p.out.String()
}

// runShell runs a line to its end and returns its output, failing t on a
// non-zero exit.
func runShell(ctx context.Context, t *testing.T, dir, line string, env []string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, "bash", "-c", line)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("exit code %d", ee.ExitCode())
		}
		t.Fatalf("%q in %s: %v\n%s", line, dir, err, out)
	}
	return string(out)
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
