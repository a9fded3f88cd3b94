package naming

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is a jittered exponential backoff: the n-th retry waits about
// Min·2ⁿ, at most Max, spread by ±20 % so that a fleet does not retry in step.
type Backoff struct {
	Min, Max time.Duration
}

// defaultBackoff retries fast at first (a lost key is back well within 2 s)
// and settles at 2 s while etcd stays away.
func defaultBackoff() Backoff {
	return Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
}

// Delay returns the wait before retry n (0-based).
func (b Backoff) Delay(n int) time.Duration {
	d := b.Min
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// sleep waits d or until ctx is done, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
