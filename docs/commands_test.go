package docs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/svckit/svckit/internal/logsink"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// kind is what the test does with a documented command.
type kind int

const (
	// run: run it to its end; it must exit 0.
	run kind = iota
	// serve: a server; start it in the background, wait for its ready
	// line, stop it with SIGTERM once its page is done.
	serve
	// check: too long to run here (tests, benchmarks): check that its
	// packages exist and that every flag and -bench/-run pattern is valid.
	check
	// external: a tool that is not part of svckit (kubectl, grpcurl, …);
	// the docs say so beside it. Not run.
	external
	// refused: a command the page shows failing; it must exit non-zero
	// with one line of output.
	refused
	// setenv: export or unset; it changes the environment of the page's
	// later commands, as it would in the reader's shell.
	setenv
	// job: job control (kill %1); the background servers of a page are
	// stopped at its end, which is what the reader's kill does.
	job
	// nested: the test of a nested module (its own go.mod, heavy
	// dependencies); checked to be one that .ci/run runs, not run here.
	nested
	// etcdctl: a recipe's etcdctl --endpoints line, run when etcdctl is installed (.ci/run installs it, and CI
	// requires it); logged, not run, where it is not.
	etcdctl
)

// rule classifies the commands that match re. Every command in a shell
// block must match one rule, or the test fails.
type rule struct {
	re    *regexp.Regexp
	kind  kind
	ready *regexp.Regexp // serve: the line that says it serves
	bound string         // appended to bound a run that takes a duration
	once  bool           // run only once in the whole test (the demo)
}

var rules = []rule{
	{re: regexp.MustCompile(`^go run \./cmd/svckit etcd( |$)`), kind: serve, ready: regexp.MustCompile(`etcd serving on`)},
	{re: regexp.MustCompile(`^go run \./cmd/svckit (xds|proxy)( |$)`), kind: serve, ready: regexp.MustCompile(`svckit (xds|proxy): serving on`)},
	{re: regexp.MustCompile(`^(\w+=\S+ )*go run \./examples/fileserver/cmd/fileserver( |$)`), kind: serve, ready: regexp.MustCompile(`msg=serving`)},
	{re: regexp.MustCompile(`^/tmp/svckit-bin/fileserver --root `), kind: serve, ready: regexp.MustCompile(`msg=serving`)},
	{re: regexp.MustCompile(`^(\w+= )+/tmp/svckit-bin/svckit ls$|^env( -u \w+)+ /tmp/svckit-bin/svckit ls `), kind: refused},
	{re: regexp.MustCompile(`^/tmp/svckit-bin/\w+ `), kind: run},
	{re: regexp.MustCompile(`^export( \w+=\S+)+$|^unset( \w+)+$`), kind: setenv},
	{re: regexp.MustCompile(`^kill %\d+$`), kind: job},
	{re: regexp.MustCompile(`^umask 0\d\d$|^openssl rand -hex \d+ > \S+$`), kind: run},
	{re: regexp.MustCompile(`^etcdctl --endpoints `), kind: etcdctl},
	{re: regexp.MustCompile(`^cd (test/\w+) && go mod download && go test .*\./\.\.\.$`), kind: nested},
	{re: regexp.MustCompile(`^go run \./cmd/svckit demo$`), kind: run, bound: " --duration 3s", once: true},
	{re: regexp.MustCompile(`^go run \./cmd/svckit (ls|new|gen)( |$)`), kind: run},
	{re: regexp.MustCompile(`^go run \./examples/fileserver/cmd/fileclient( |$)`), kind: run},
	{re: regexp.MustCompile(`^GRPC_XDS_BOOTSTRAP=\S+ go run \./examples/fileserver/cmd/xdsclient$`), kind: run, bound: " --loop 1s"},
	{re: regexp.MustCompile(`^go build( |$)`), kind: run},
	{re: regexp.MustCompile(`^bin/\w+( |$)`), kind: run},
	{re: regexp.MustCompile(`^mkdir -p \S+$`), kind: run},
	{re: regexp.MustCompile(`^cat > \S+ <<'EOF'\n`), kind: run},
	{re: regexp.MustCompile(`^\(?cd \S+ && go (test|generate) \./\.\.\.\)?$`), kind: run},
	{re: regexp.MustCompile(`^(\w+=\S+ )*(nice )?go test `), kind: check},
	// A benchmark of a nested module, run from its directory.
	{re: regexp.MustCompile(`^cd bench/\w+ && (\w+=\S+ )*go test `), kind: check},
	// etcdctl without --endpoints: a reference against the reader's own etcd.
	{re: regexp.MustCompile(`^(kubectl|grpcurl|grpc-health-probe|curl|etcdctl) `), kind: external},
}

// knownBroken lists commands that do not run as written, in pages this
// branch does not own; each is reported, and listing one that runs now
// fails the test, so the list only shrinks.
var knownBroken = map[string]string{}

// command is one command of a shell block: continuation lines joined, a
// here-document included, the trailing comment cut.
type command struct {
	file string // relative to the repository root
	line int
	text string
}

// page is one markdown file and its shell blocks, each a list of commands.
type page struct {
	file   string
	blocks [][]command
	body   string
}

// TestDocumentedCommandsRun runs every command of every sh, bash, shell or
// console block of README.md and docs/*.md as written, or checks it when it
// is too long to run (see rules). It works in a copy of the checkout, with
// HOME, GOBIN and /tmp in temporary directories, so nothing is left behind;
// and it moves fixed 127.0.0.1 ports to free ones, consistently within a
// page, so that it can run beside other tests (2379 also in
// SVCKIT_ETCD_ENDPOINTS, and `svckit etcd` gets --listen). Each page runs
// its blocks in order, each block from the root of the copy, with `cd`
// carried from one line to the next; the servers a page starts are stopped
// at its end. Afterwards every file the commands left in the copy must be
// ignored by .gitignore.
func TestDocumentedCommandsRun(t *testing.T) {
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	pages := readPages(t, repo)
	tmp := t.TempDir()
	work := filepath.Join(tmp, "work", "svckit")
	before := copyCheckout(t, repo, work)
	env := commandEnv(t, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	if d, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), d.Add(-30*time.Second))
	}
	defer cancel()
	// One build of every program the pages run fills the build cache for
	// their go run commands (with -trimpath it is shared by every copy).
	start := time.Now()
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(tmp, "prebuilt")+"/", "./cmd/svckit", "./examples/fileserver/cmd/...")
	build.Dir, build.Env = work, env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built the programs in %s", time.Since(start).Round(time.Millisecond))
	h := &harness{work: work, tmp: tmp, env: env, ran: map[string]bool{}, testFlags: goTestFlags(t)}
	for _, p := range pages {
		t.Run(p.file, func(t *testing.T) { h.runPage(ctx, t, p) })
	}
	// What the commands wrote into the checkout must be ignored by git.
	_ = filepath.WalkDir(work, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(work, p)
		if before[filepath.ToSlash(rel)] {
			return nil
		}
		if exec.Command("git", "-C", repo, "check-ignore", "--no-index", "-q", "--", rel).Run() != nil {
			t.Errorf("the documented commands left %s in the checkout, and .gitignore does not cover it", rel)
		}
		return nil
	})
}

type harness struct {
	work, tmp string
	env       []string
	ran       map[string]bool
	testFlags map[string]bool // go test's and go build's flags; true if it takes a value
}

func (h *harness) runPage(ctx context.Context, t *testing.T, p page) {
	etcdAddr := freeAddr(t)
	ports := map[string]string{"127.0.0.1:2379": etcdAddr}
	env := append(append([]string(nil), h.env...), "SVCKIT_ETCD_ENDPOINTS="+etcdAddr)
	var servers []*shellProc
	defer func() {
		for i := len(servers) - 1; i >= 0; i-- {
			servers[i].stop(t)
		}
	}()
	cwdFile := filepath.Join(h.tmp, "cwd")
	for _, b := range p.blocks {
		cwd := h.work
		for _, c := range b {
			plain, bg := strings.CutSuffix(c.text, "&")
			plain = strings.TrimSpace(plain)
			r, ok := classify(plain)
			if !ok {
				t.Errorf("%s:%d: no rule says how to run or check %q: add one to rules", c.file, c.line, c.text)
				continue
			}
			if bg && r.kind != serve {
				t.Errorf("%s:%d: %q runs in the background but is not a server", c.file, c.line, c.text)
				continue
			}
			text := h.rewrite(plain, ports, etcdAddr) + r.bound
			if r.kind == etcdctl {
				if !haveEtcdctl(t, c) {
					continue
				}
				r.kind = run
			}
			switch r.kind {
			case external:
				t.Logf("%s:%d: external tool, not run: %s", c.file, c.line, c.text)
			case nested:
				if err := h.checkNested(plain); err != nil {
					t.Errorf("%s:%d: %q: %v", c.file, c.line, c.text, err)
				} else {
					t.Logf("%s:%d: a nested module's test, run by .ci/run: %s", c.file, c.line, c.text)
				}
			case job:
				t.Logf("%s:%d: job control, done by stopping the page's servers at its end: %s", c.file, c.line, c.text)
			case setenv:
				env = setEnv(env, text)
				t.Logf("%s:%d: environment: %s", c.file, c.line, c.text)
			case refused:
				runRefused(ctx, t, c, text, cwd, env)
			case check:
				if errs := h.checkGoTest(c.text); len(errs) > 0 {
					t.Errorf("%s:%d: %q: %v", c.file, c.line, c.text, errors.Join(errs...))
				} else {
					t.Logf("%s:%d: checked, not run: %s", c.file, c.line, c.text)
				}
			case serve:
				sp := startShell(t, cwd, text, env)
				servers = append(servers, sp)
				if err := sp.waitFor(r.ready, 4*time.Minute); err != nil {
					t.Fatalf("%s:%d: %q: %v", c.file, c.line, c.text, err)
				}
				t.Logf("%s:%d: serving: %s", c.file, c.line, c.text)
			case run:
				if r.once && h.ran[c.text] {
					t.Logf("%s:%d: ran already: %s", c.file, c.line, c.text)
					continue
				}
				h.ran[c.text] = true
				cwd = runShell(ctx, t, c, text, cwd, env, cwdFile)
			}
		}
	}
	for i := len(servers) - 1; i >= 0; i-- {
		if err := servers[i].stop(t); err != nil {
			t.Errorf("%s: %v", p.file, err)
		}
	}
	servers = nil
	h.checkInline(t, p)
}

// haveEtcdctl reports whether etcdctl is installed, for command c, which
// uses it; in CI its absence fails the test.
func haveEtcdctl(t *testing.T, c command) bool {
	t.Helper()
	if _, err := exec.LookPath("etcdctl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s:%d: etcdctl is not installed; .ci/run installs it (etcd-client)", c.file, c.line)
		}
		t.Logf("%s:%d: etcdctl not installed, not run: %s", c.file, c.line, c.text)
		return false
	}
	return true
}

// runRefused runs text, command c as rewritten, in cwd and checks that it
// fails with one line of output.
func runRefused(ctx context.Context, t *testing.T, c command, text, cwd string, env []string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "bash", "-c", text)
	cmd.Dir, cmd.Env = cwd, env
	out, err := cmd.CombinedOutput()
	lines := strings.Count(strings.TrimSpace(string(out)), "\n") + 1
	if err == nil || lines != 1 {
		t.Errorf("%s:%d: %q: want a refusal in one line, have %v and %d lines:\n%s", c.file, c.line, c.text, err, lines, out)
	} else {
		t.Logf("%s:%d: refused as shown: %s", c.file, c.line, strings.TrimSpace(string(out)))
	}
}

// runShell runs text, command c as rewritten, in cwd with bash, fails the
// test if it fails, and returns the directory it ended in (a `cd` carries
// over to the block's next command), read back through cwdFile.
func runShell(ctx context.Context, t *testing.T, c command, text, cwd string, env []string, cwdFile string) string {
	t.Helper()
	start := time.Now()
	script := `cd -- "$1" || exit; eval "$2"; rc=$?; pwd >"$3"; exit $rc`
	cmd := exec.CommandContext(ctx, "bash", "-c", script, "bash", cwd, text, cwdFile)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s:%d: %q: %v\n%s", c.file, c.line, c.text, err, out)
	}
	t.Logf("%s:%d: ran in %s: %s", c.file, c.line, time.Since(start).Round(time.Millisecond), c.text)
	if d, err := os.ReadFile(cwdFile); err == nil {
		return strings.TrimSpace(string(d))
	}
	return cwd
}

// rewrite moves /tmp into the test's directory and fixed 127.0.0.1 ports
// to free ones, and points `svckit etcd` at the page's etcd address.
func (h *harness) rewrite(text string, ports map[string]string, etcdAddr string) string {
	text = strings.ReplaceAll(text, "/tmp/", filepath.Join(h.tmp, "slash-tmp")+"/")
	text = portRE.ReplaceAllStringFunc(text, func(a string) string {
		if a == "127.0.0.1:0" {
			return a
		}
		if _, ok := ports[a]; !ok {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return a
			}
			ports[a] = l.Addr().String()
			l.Close()
		}
		return ports[a]
	})
	if strings.HasPrefix(text, "go run ./cmd/svckit etcd") && !strings.Contains(text, "--listen") {
		text += " --listen " + etcdAddr
	}
	return text
}

// checkNested checks a nested module's test command: the directory holds
// a go.mod, and .ci/run runs the tests there.
func (h *harness) checkNested(text string) error {
	dir := strings.Fields(text)[1]
	if _, err := os.Stat(filepath.Join(h.work, dir, "go.mod")); err != nil {
		return fmt.Errorf("not a module: %w", err)
	}
	ci, err := os.ReadFile(filepath.Join(h.work, ".ci", "run"))
	if err != nil {
		return err
	}
	if !strings.Contains(string(ci), "cd "+dir+" && ") || !strings.Contains(string(ci), "go test") {
		return fmt.Errorf(".ci/run does not run the tests of %s", dir)
	}
	return nil
}

// outsideDir is the folder beside the checkout that the project's makers
// have and its users do not; spelled in two pieces so that this file does
// not name it itself.
const outsideDir = ".." + "/" + "shared"

// setEnv applies an export or unset line to env.
func setEnv(env []string, line string) []string {
	words := strings.Fields(line)
	out := env
	for _, w := range words[1:] {
		name, _, _ := strings.Cut(w, "=")
		out = slices.DeleteFunc(out, func(kv string) bool { return strings.HasPrefix(kv, name+"=") })
		if words[0] == "export" {
			out = append(out, w)
		}
	}
	return out
}

var portRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)

func classify(text string) (rule, bool) {
	for _, r := range rules {
		if r.re.MatchString(text) {
			return r, true
		}
	}
	return rule{}, false
}

// checkGoTest checks a go test command without running it: its packages
// exist, its flags are go test's or defined by the package's tests, and its
// -run and -bench patterns compile and -bench names a benchmark. A leading
// "cd DIR && " makes the packages relative to DIR.
func (h *harness) checkGoTest(text string) []error {
	base := h.work
	if rest, ok := strings.CutPrefix(text, "cd "); ok {
		if dir, cmd, ok := strings.Cut(rest, " && "); ok {
			base, text = filepath.Join(h.work, dir), cmd
		}
	}
	args, err := splitWords(text)
	if err != nil {
		return []error{err}
	}
	for len(args) > 0 && (args[0] == "nice" || strings.Contains(args[0], "=") && !strings.HasPrefix(args[0], "-")) {
		args = args[1:]
	}
	if len(args) < 2 || args[0] != "go" || args[1] != "test" {
		return []error{errors.New("not a go test command")}
	}
	args = args[2:]
	flags := map[string]string{}

	var pkgs []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			pkgs = append(pkgs, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if takes, ok := h.testFlags[name]; ok && takes && !hasVal && i+1 < len(args) {
			i++
			val = args[i]
		}
		flags[name] = val
	}
	dirs, errs := packageDirs(base, pkgs)
	tests := testSources(dirs)
	for name, val := range flags {
		if _, ok := h.testFlags[name]; ok {
			continue
		}
		if !regexp.MustCompile(`flag\.\w+\("` + regexp.QuoteMeta(name) + `"`).MatchString(tests) {
			errs = append(errs, fmt.Errorf("flag -%s: neither go test's nor defined by the package's tests", name))
		}
		_ = val
	}
	for _, name := range []string{"run", "bench", "skip"} {
		v, ok := flags[name]
		if !ok {
			continue
		}
		for _, part := range splitTestPattern(v) {
			if _, err := regexp.Compile(part); err != nil {
				errs = append(errs, fmt.Errorf("-%s %q: %w", name, v, err))
			}
		}
	}
	if v, ok := flags["bench"]; ok {
		top := regexp.MustCompile(splitTestPattern(v)[0])
		found := false
		for _, m := range regexp.MustCompile(`func Benchmark(\w*)\(`).FindAllStringSubmatch(tests, -1) {
			found = found || top.MatchString("Benchmark"+m[1])
		}
		if !found {
			errs = append(errs, fmt.Errorf("-bench %q matches no benchmark in %v", v, pkgs))
		}
	}
	return errs
}

// packageDirs returns the directories of a go test command's packages,
// relative paths under base, and an error for each that is not one.
func packageDirs(base string, pkgs []string) (dirs []string, errs []error) {
	if len(pkgs) == 0 {
		errs = append(errs, errors.New("no package"))
	}
	for _, p := range pkgs {
		if p != "." && !strings.HasPrefix(p, "./") {
			errs = append(errs, fmt.Errorf("package %q: not a relative path", p))
			continue
		}
		d := filepath.Join(base, strings.TrimSuffix(strings.TrimSuffix(p, "..."), "/"))
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("package %s: no such directory", p))
			continue
		}
		dirs = append(dirs, d)
	}
	return dirs, errs
}

// checkInline checks the go test commands in the page's prose (inline
// code) and refuses flag fragments such as `-bench X -benchtime 3s`.
func (h *harness) checkInline(t *testing.T, p page) {
	for _, span := range inlineCode(p.body) {
		key := p.file + ": " + span
		var errs []error
		switch {
		case strings.HasPrefix(span, "go test "):
			errs = h.checkGoTest(span)
		case strings.HasPrefix(span, "-bench"):
			errs = []error{errors.New("a fragment: write the whole go test command")}
		default:
			continue
		}
		why, known := knownBroken[key]
		switch {
		case len(errs) > 0 && known:
			t.Logf("known not to run (%s), in a page another branch owns: %s", why, key)
		case len(errs) > 0:
			t.Errorf("%s: `%s`: %v", p.file, span, errors.Join(errs...))
		case known:
			t.Errorf("%s is listed in knownBroken but checks now: remove it", key)
		}
	}
}

// splitTestPattern splits a -run/-bench pattern at its top-level slashes,
// as go test does.
func splitTestPattern(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(', '[':
			depth++
		case ')', ']':
			depth--
		case '\\':
			i++
		case '/':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// testSources returns the *_test.go files under dirs, concatenated.
func testSources(dirs []string) string {
	var b strings.Builder
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() && strings.HasSuffix(p, "_test.go") {
				src, _ := os.ReadFile(p)
				b.Write(src)
			}
			return nil
		})
	}
	return b.String()
}

// goTestFlags reads go test's and go build's flags from go help.
func goTestFlags(t *testing.T) map[string]bool {
	t.Helper()
	flags := map[string]bool{}
	re := regexp.MustCompile(`(?m)^\t-([a-zA-Z]+)( \S.*)?$`)
	for _, topic := range []string{"testflag", "build"} {
		out, err := exec.Command("go", "help", topic).Output()
		if err != nil {
			t.Fatalf("go help %s: %v", topic, err)
		}
		for _, m := range re.FindAllStringSubmatch(string(out), -1) {
			flags[m[1]] = m[2] != ""
		}
	}
	if !flags["bench"] || flags["race"] {
		t.Fatalf("go help: could not read the flags: %v", flags)
	}
	return flags
}

// splitWords splits a command line into words as sh does for plain words
// and single and double quotes (no expansion).
func splitWords(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unclosed ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("unclosed \" in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

var (
	fenceRE   = regexp.MustCompile("^\\s*```\\s*(\\w*)")
	heredocRE = regexp.MustCompile(`<<-?'?(\w+)'?`)
)

// readPages reads README.md and docs/*.md and the commands of their shell
// blocks.
func readPages(t *testing.T, repo string) []page {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repo, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	files = append([]string{filepath.Join(repo, "README.md")}, files...)
	var pages []page
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(repo, f)
		p := page{file: filepath.ToSlash(rel), body: string(b)}
		var lines []string
		sc := bufio.NewScanner(strings.NewReader(p.body))
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		for i := 0; i < len(lines); i++ {
			m := fenceRE.FindStringSubmatch(lines[i])
			if m == nil {
				continue
			}
			j := i + 1
			for j < len(lines) && !fenceRE.MatchString(lines[j]) {
				j++
			}
			switch m[1] {
			case "sh", "bash", "shell", "console":
				p.blocks = append(p.blocks, blockCommands(p.file, i+2, lines[i+1:j], m[1] == "console"))
			}
			i = j
		}
		pages = append(pages, p)
	}
	return pages
}

// blockCommands splits a block into commands. In a console block only
// lines starting with "$ " are commands.
func blockCommands(file string, first int, lines []string, console bool) []command {
	var out []command
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if console {
			if !strings.HasPrefix(l, "$ ") {
				continue
			}
			l = l[2:]
		}
		l = strings.TrimSpace(cutComment(l))
		if l == "" {
			continue
		}
		c := command{file: file, line: first + i}
		for strings.HasSuffix(l, `\`) && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(l, `\`) + " " + strings.TrimSpace(cutComment(lines[i]))
		}
		if m := heredocRE.FindStringSubmatch(l); m != nil {
			for i+1 < len(lines) {
				i++
				l += "\n" + lines[i]
				if strings.TrimSpace(lines[i]) == m[1] {
					break
				}
			}
		}
		c.text = l
		out = append(out, c)
	}
	return out
}

// cutComment cuts a # comment that starts a word outside quotes.
func cutComment(l string) string {
	var q byte
	for i := 0; i < len(l); i++ {
		switch c := l[i]; {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '\'' || c == '"':
			q = c
		case c == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t'):
			return l[:i]
		}
	}
	return l
}

var inlineRE = regexp.MustCompile("`([^`\n]+)`")

// inlineCode returns the inline code spans of a page outside its fenced
// blocks.
func inlineCode(body string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(body, "\n") {
		if fenceRE.MatchString(l) {
			in = !in
			continue
		}
		if in {
			continue
		}
		for _, m := range inlineRE.FindAllStringSubmatch(l, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// copyCheckout copies the files git would have in a clone (tracked, and
// untracked but not ignored) into dst, and returns their paths.
func copyCheckout(t *testing.T, repo, dst string) map[string]bool {
	t.Helper()
	out, err := exec.Command("git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files (the test copies the checkout with git): %v", err)
	}
	files := map[string]bool{}
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(repo, filepath.FromSlash(rel))
		st, err := os.Lstat(src)
		if err != nil || !st.Mode().IsRegular() {
			continue // deleted in the work tree, or a symlink
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, b, st.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
		files[rel] = true
	}
	return files
}

// commandEnv is the environment of the documented commands: the test's,
// less any SVCKIT_ variable, with HOME, GOBIN and PATH in tmp, the Go
// caches where they were, and -trimpath so that builds in the copy share
// the build cache with every other run.
func commandEnv(t *testing.T, tmp string) []string {
	t.Helper()
	goenv := map[string]string{}
	out, err := exec.Command("go", "env", "GOPATH", "GOMODCACHE", "GOCACHE", "GOFLAGS").Output()
	if err != nil {
		t.Fatal(err)
	}
	vals := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	for i, k := range []string{"GOPATH", "GOMODCACHE", "GOCACHE", "GOFLAGS"} {
		if i < len(vals) {
			goenv[k] = vals[i]
		}
	}
	gobin := filepath.Join(tmp, "gobin")
	home := filepath.Join(tmp, "home")
	for _, d := range []string{gobin, home, filepath.Join(tmp, "slash-tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "SVCKIT_"), k == "HOME", k == "GOBIN", k == "PATH", goenv[k] != "" || k == "GOFLAGS":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"HOME="+home, "GOBIN="+gobin, "PATH="+gobin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"GOPATH="+goenv["GOPATH"], "GOMODCACHE="+goenv["GOMODCACHE"], "GOCACHE="+goenv["GOCACHE"],
		"GOFLAGS="+strings.TrimSpace(goenv["GOFLAGS"]+" -trimpath"))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// shellProc is a server command run by bash in a process group of its own,
// so that SIGTERM reaches the program behind `go run`.
type shellProc struct {
	text string
	cmd  *exec.Cmd
	out  logsink.Buffer
	done chan struct{}
}

func startShell(t *testing.T, dir, text string, env []string) *shellProc {
	t.Helper()
	p := &shellProc{text: text, cmd: exec.Command("bash", "-c", text), done: make(chan struct{})}
	p.cmd.Dir, p.cmd.Env = dir, env
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.WaitDelay = 30 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait returns once every process holding the output has exited.
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p
}

// waitFor polls the output until re matches; it fails if the processes
// exit first or d passes.
func (p *shellProc) waitFor(re *regexp.Regexp, d time.Duration) error {
	deadline := time.Now().Add(d)
	for !re.MatchString(p.out.String()) {
		select {
		case <-p.done:
			return fmt.Errorf("exited before %s:\n%s", re, p.out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s within %s:\n%s", re, d, p.out.String())
		}
	}
	return nil
}

// stop sends SIGTERM to the process group and waits for all of it to
// exit; after 30s it kills the group and returns an error.
func (p *shellProc) stop(t *testing.T) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%q still running 30s after SIGTERM:\n%s", p.text, p.out.String())
	}
}

// TestLinksResolve checks every relative link of README.md and docs/*.md:
// the file exists inside the repository, and its #anchor names a heading.
func TestLinksResolve(t *testing.T) {
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	linkRE := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, p := range readPages(t, repo) {
		in := false
		for n, l := range strings.Split(p.body, "\n") {
			if strings.Contains(l, outsideDir) {
				t.Errorf("%s:%d: names %s, which readers of a clone do not have", p.file, n+1, outsideDir)
			}
			if fenceRE.MatchString(l) {
				in = !in
				continue
			}
			if in {
				continue
			}
			for _, m := range linkRE.FindAllStringSubmatch(inlineRE.ReplaceAllString(l, "``"), -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				if err := checkLink(repo, p.file, target); err != nil {
					t.Errorf("%s:%d: (%s): %v", p.file, n+1, target, err)
				}
			}
		}
	}
}

func checkLink(repo, from, target string) error {
	file, anchor, _ := strings.Cut(target, "#")
	abs := filepath.Join(repo, filepath.FromSlash(from))
	if file != "" {
		abs = filepath.Join(filepath.Dir(abs), filepath.FromSlash(file))
	}
	if rel, err := filepath.Rel(repo, abs); err != nil || strings.HasPrefix(rel, "..") {
		return errors.New("points outside the repository; readers of a clone do not have it")
	}
	st, err := os.Stat(abs)
	if err != nil {
		return err
	}
	if anchor == "" {
		return nil
	}
	if st.IsDir() || !strings.HasSuffix(abs, ".md") {
		return errors.New("an anchor into something that is not a markdown file")
	}
	b, err := os.ReadFile(abs)
	if err != nil {
		return err
	}
	for _, a := range anchors(string(b)) {
		if a == anchor {
			return nil
		}
	}
	return fmt.Errorf("no heading with anchor #%s (have %v)", anchor, anchors(string(b)))
}

// anchors returns the GitHub anchors of a markdown file's headings.
func anchors(body string) []string {
	var out []string
	seen := map[string]int{}
	in := false
	for _, l := range strings.Split(body, "\n") {
		if fenceRE.MatchString(l) {
			in = !in
			continue
		}
		if in || !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(l, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r > 127 && isLetter(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out = append(out, fmt.Sprintf("%s-%d", a, n))
		} else {
			out = append(out, a)
		}
		seen[a]++
	}
	return out
}

func isLetter(r rune) bool { return strings.ToUpper(string(r)) != strings.ToLower(string(r)) }
