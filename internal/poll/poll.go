// Package poll waits for a condition in tests: it checks the condition
// every 10ms until it holds or a deadline passes, instead of sleeping for a
// guessed time.
package poll

import (
	"testing"
	"time"
)

// Until checks cond every 10ms until it holds, and returns how long that
// took; it fails tb, naming what, if cond does not hold within d.
func Until(tb testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			tb.Fatalf("%s: not true within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}
