package proc

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/svckit/svckit/internal/poll"
)

// TestChildDiesWithItsParent kills (-9) a process that started a child
// through Start, as a test binary killed by its -timeout is, and checks that
// the child does not outlive it.
func TestChildDiesWithItsParent(t *testing.T) {
	if os.Getenv("PROC_TEST_PARENT") == "1" {
		p, err := Start("sleep", []string{"60"}, nil)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Printf("child=%d\n", p.cmd.Process.Pid)
		time.Sleep(time.Minute)
		return
	}
	parent := exec.Command(os.Args[0], "-test.run", "^TestChildDiesWithItsParent$")
	parent.Env = append(os.Environ(), "PROC_TEST_PARENT=1")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	var line string
	for !strings.Contains(line, "\n") {
		n, err := out.Read(buf)
		if err != nil {
			t.Fatalf("parent: %v (read %q)", err, line)
		}
		line += string(buf[:n])
	}
	m := regexp.MustCompile(`child=(\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("parent said %q", line)
	}
	child, _ := strconv.Atoi(m[1])
	_ = parent.Process.Kill()
	_ = parent.Wait()
	poll.Until(t, 10*time.Second, "the child gone with its parent", func() bool { return !alive(child) })
}

// alive reports whether pid runs (a zombie, waiting for a reaper, does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}
