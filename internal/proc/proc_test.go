package proc

import (
	"regexp"
	"testing"
	"time"
)

// A line written just before the process exits is found: the output may
// be complete only once the process has exited.
func TestWaitForFindsTheLastLineBeforeExit(t *testing.T) {
	re := regexp.MustCompile(`report (\d+)`)
	for i := range 20 {
		p := StartT(t, "sh", []string{"-c", "echo report 42"}, nil)
		m, err := p.WaitFor(re, 10*time.Second)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if have, want := m[1], "42"; have != want {
			t.Fatalf("run %d: have %q, want %q", i, have, want)
		}
	}
}
