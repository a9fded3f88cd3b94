package throttle

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Option configures a Throttle.
type Option func(*config)

type config struct {
	k       float64
	slack   float64
	window  time.Duration
	buckets int
}

// WithK sets how many requests the client may send per call the backend
// accepts before it starts rejecting (K ≥ 1); default 2, the SRE book's.
// Lower rejects sooner and wastes less of the backend on calls it will
// refuse; higher sends more and learns sooner that the backend is back.
func WithK(k float64) Option { return func(c *config) { c.k = k } }

// WithSlack sets how many requests beyond K × accepts are never rejected
// (≥ 0); default 10, so a handful of failures in a quiet window rejects
// nothing.
func WithSlack(n float64) Option { return func(c *config) { c.slack = n } }

// WithWindow sets how far back requests and accepts are counted, and in
// how many buckets; default 3s in 10. A longer window decides on more
// calls but is slower to see a recovery: calls rejected locally count as
// requests, so the probability falls window by window (about p → 2p − 1
// with K = 2), two to four windows after the backend is back.
func WithWindow(d time.Duration, buckets int) Option {
	return func(c *config) { c.window, c.buckets = d, buckets }
}

// Stats is a Throttle's state now.
type Stats struct {
	// Requests and Accepts count the calls of the window: attempted (those
	// rejected locally too), and accepted by the backend.
	Requests, Accepts int64
	// Rejected counts the calls rejected locally since New.
	Rejected uint64
	// Probability is the chance that a call made now is rejected.
	Probability float64
}

// Throttle is one backend's adaptive throttle; see the package doc. Its
// methods are safe for concurrent use.
type Throttle struct {
	cfg      config
	bucket   time.Duration
	rejected atomic.Uint64
	now      func() time.Time
	rand     func() float64

	mu   sync.Mutex
	ring []counts // by bucket number modulo len
}

// counts holds the requests and accepts of one bucket of time.
type counts struct {
	id                int64 // the bucket's number: time since the epoch / bucket
	requests, accepts int64
}

// New returns a Throttle, or an error naming the setting that is out of
// range.
func New(opts ...Option) (*Throttle, error) {
	c := config{k: 2, slack: 10, window: 3 * time.Second, buckets: 10}
	for _, o := range opts {
		o(&c)
	}
	switch {
	case !(c.k >= 1) || math.IsInf(c.k, 1): // NaN too
		return nil, fmt.Errorf("throttle: K %v: want a finite K ≥ 1", c.k)
	case !(c.slack >= 0) || math.IsInf(c.slack, 1):
		return nil, fmt.Errorf("throttle: slack %v: want a finite slack ≥ 0", c.slack)
	case c.buckets < 1 || c.window < time.Duration(c.buckets)*time.Millisecond:
		return nil, fmt.Errorf("throttle: window %s in %d buckets: want at least 1 bucket of 1ms", c.window, c.buckets)
	}
	return &Throttle{
		cfg: c, bucket: c.window / time.Duration(c.buckets), now: time.Now, rand: rand.Float64,
		ring: make([]counts, c.buckets),
	}, nil
}

// Allow counts a request and reports whether it may be sent; false means
// reject it locally. A call that was allowed must report its outcome with
// Done.
func (t *Throttle) Allow() bool {
	id := t.now().UnixNano() / int64(t.bucket)
	t.mu.Lock()
	requests, accepts := t.sum(id)
	p := t.probability(requests, accepts)
	t.at(id).requests++
	t.mu.Unlock()
	if p > 0 && t.rand() < p {
		t.rejected.Add(1)
		return false
	}
	return true
}

// Done reports the outcome of an allowed call: whether the backend
// accepted it.
func (t *Throttle) Done(accepted bool) {
	if !accepted {
		return
	}
	id := t.now().UnixNano() / int64(t.bucket)
	t.mu.Lock()
	t.at(id).accepts++
	t.mu.Unlock()
}

// Stats returns the throttle's state now.
func (t *Throttle) Stats() Stats {
	id := t.now().UnixNano() / int64(t.bucket)
	t.mu.Lock()
	requests, accepts := t.sum(id)
	t.mu.Unlock()
	return Stats{Requests: requests, Accepts: accepts, Rejected: t.rejected.Load(), Probability: t.probability(requests, accepts)}
}

func (t *Throttle) probability(requests, accepts int64) float64 {
	return max(0, (float64(requests)-t.cfg.k*float64(accepts)-t.cfg.slack)/float64(requests+1))
}

// sum adds the buckets of the window that ends with bucket id. t.mu is
// held.
func (t *Throttle) sum(id int64) (requests, accepts int64) {
	for _, b := range t.ring {
		if b.id > id-int64(len(t.ring)) && b.id <= id {
			requests += b.requests
			accepts += b.accepts
		}
	}
	return requests, accepts
}

// at returns bucket id, emptied if it held an older bucket. t.mu is held.
func (t *Throttle) at(id int64) *counts {
	b := &t.ring[id%int64(len(t.ring))]
	if b.id != id {
		*b = counts{id: id}
	}
	return b
}
