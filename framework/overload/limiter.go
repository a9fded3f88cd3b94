package overload

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Priority says when a method's calls may be shed.
type Priority int

const (
	// Normal calls are shed over the limit.
	Normal Priority = iota
	// Critical calls are never shed: health checks, reflection, and what
	// an operator needs during an overload.
	Critical
	// Sheddable calls are shed first, over three quarters of the limit.
	Sheddable
)

// Option configures a Limiter.
type Option func(*config)

type config struct {
	threshold float64
	window    time.Duration
	buckets   int
	priority  func(method string) Priority
	root      string
	sample    time.Duration
}

// WithCPUThreshold sets the share of the CPU the process may use (0 < u ≤
// 1) above which the limiter sheds; default 0.8.
func WithCPUThreshold(u float64) Option { return func(c *config) { c.threshold = u } }

// WithWindow sets how far back the limit looks and in how many buckets;
// default 1s in 10.
func WithWindow(d time.Duration, buckets int) Option {
	return func(c *config) { c.window, c.buckets = d, buckets }
}

// WithPriority sets the priority of each method ("/pkg.Svc/Method");
// default Normal. The health and reflection services are Critical
// whatever it says.
func WithPriority(f func(method string) Priority) Option { return func(c *config) { c.priority = f } }

// WithCgroupRoot sets the directory under which /proc/self/cgroup and
// /sys/fs/cgroup are read; default "/". For tests and unusual mounts.
func WithCgroupRoot(dir string) Option { return func(c *config) { c.root = dir } }

// Stats is a Limiter's state now.
type Stats struct {
	// Limit is the calls in flight the instance can serve, 0 before the
	// first full bucket.
	Limit int64
	// InFlight counts the unary calls in flight.
	InFlight int64
	// Shed counts the calls shed since New.
	Shed uint64
	// CPU is the share of the CPU the process may use that it used, over
	// the last samples (0 to 1; 1 when unknown).
	CPU float64
	// Cores is how many cores the process may use: the least of its
	// cgroup's quota, GOMAXPROCS and the machine's.
	Cores float64
}

// Limiter admits or sheds calls; see the package doc. Its methods are safe
// for concurrent use.
type Limiter struct {
	cfg      config
	bucket   time.Duration
	cores    float64
	inflight atomic.Int64
	shed     atomic.Uint64
	lastShed atomic.Int64  // unix nanoseconds; 0: never
	cpu      atomic.Uint64 // math.Float64bits of the utilization
	now      func() time.Time

	mu   sync.Mutex
	ring []bucket // by bucket number modulo len
}

// bucket holds what completed within one bucket of time.
type bucket struct {
	id    int64         // the bucket's number: time since the epoch / bucket
	pass  int64         // calls completed
	minRT time.Duration // their shortest latency
}

// New returns a Limiter. It reads the cgroup's CPU quota once; Run
// samples the CPU.
func New(opts ...Option) (*Limiter, error) {
	c := config{threshold: 0.8, window: time.Second, buckets: 10, root: "/", sample: 250 * time.Millisecond}
	for _, o := range opts {
		o(&c)
	}
	switch {
	case !(c.threshold > 0 && c.threshold <= 1): // NaN too
		return nil, fmt.Errorf("overload: CPU threshold %v: want 0 < u ≤ 1", c.threshold)
	case c.buckets < 2 || c.window < time.Duration(c.buckets)*time.Millisecond:
		return nil, fmt.Errorf("overload: window %s in %d buckets: want at least 2 buckets of 1ms", c.window, c.buckets)
	}
	// The Go scheduler runs Go code on at most GOMAXPROCS threads, so a
	// process limited that way (by hand, or by Go 1.25+ from the cgroup's
	// quota, rounded up) can use no more, whatever the machine has.
	cores := float64(min(runtime.NumCPU(), runtime.GOMAXPROCS(0)))
	if q, ok, err := cgroupCores(c.root); err != nil {
		return nil, err
	} else if ok && q < cores {
		cores = q
	}
	l := &Limiter{cfg: c, bucket: c.window / time.Duration(c.buckets), cores: cores, now: time.Now, ring: make([]bucket, c.buckets)}
	l.setCPU(0)
	if _, ok := processCPU(); !ok {
		l.setCPU(1)
	}
	return l, nil
}

// Run samples the process's CPU use every 250 ms until ctx ends, and
// returns nil then.
func (l *Limiter) Run(ctx context.Context) error {
	prev, ok := processCPU()
	if !ok {
		<-ctx.Done()
		return nil
	}
	at := l.now()
	t := time.NewTicker(l.cfg.sample)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cpu, _ := processCPU()
		now := l.now()
		if wall := now.Sub(at); wall > 0 {
			u := float64(cpu-prev) / (float64(wall) * l.cores)
			// Half of the last sample, half of the history: a busy
			// second shows within two samples.
			l.setCPU(min(1, (l.CPU()+u)/2))
		}
		prev, at = cpu, now
	}
}

func (l *Limiter) setCPU(u float64) { l.cpu.Store(math.Float64bits(u)) }

// CPU returns the smoothed share of the allowed CPU the process uses.
func (l *Limiter) CPU() float64 { return math.Float64frombits(l.cpu.Load()) }

// Allow admits a unary call of method, or returns false to shed it. An
// admitted call must call done once it completes. Critical calls are
// neither counted nor measured: a health check answered in microseconds
// says nothing of what the service's calls cost.
func (l *Limiter) Allow(method string) (done func(), ok bool) {
	p := l.priority(method)
	if p == Critical {
		return func() {}, true
	}
	if l.overloaded(p, l.inflight.Load()) {
		return nil, false
	}
	l.inflight.Add(1)
	start := l.now()
	return func() { l.release(start) }, true
}

// release ends a call admitted at start: it leaves the calls in flight,
// and its latency counts.
func (l *Limiter) release(start time.Time) {
	end := l.now()
	l.inflight.Add(-1)
	l.record(end, end.Sub(start))
}

// AllowStream admits a stream of method when it opens, or returns false to
// shed it. A stream holds no slot while it lasts.
func (l *Limiter) AllowStream(method string) bool {
	p := l.priority(method)
	return p == Critical || !l.overloaded(p, l.inflight.Load())
}

func (l *Limiter) priority(method string) Priority {
	if exempt(method) {
		return Critical
	}
	if l.cfg.priority != nil {
		return l.cfg.priority(method)
	}
	return Normal
}

// overloaded reports whether a call of priority p, with inflight calls in
// flight before it, is over the limit while the CPU is busy or the limiter
// shed with the CPU busy within the last second, and counts it shed if so.
// Only a shed with the CPU busy starts that second: sheds within it do not
// prolong it, so shedding ends a second after the CPU calms down. An
// instance whose CPU is calm never sheds, however its calls wait: they
// wait on I/O, or for a CPU that other processes hold, and another
// instance would not serve them sooner.
func (l *Limiter) overloaded(p Priority, inflight int64) bool {
	now := l.now()
	busy := l.CPU() >= l.cfg.threshold
	if !busy && now.UnixNano()-l.lastShed.Load() > int64(time.Second) {
		return false
	}
	limit := l.limit(now)
	if limit == 0 {
		return false
	}
	if p == Sheddable {
		limit = max(1, limit*3/4)
	}
	if inflight < limit {
		return false
	}
	l.shed.Add(1)
	if busy {
		l.lastShed.Store(now.UnixNano())
	}
	return true
}

// limit returns the calls in flight the instance served in the window:
// the most completed in a bucket per second times the shortest latency of
// a call, rounded up, plus one waiting call per core it may use, so that a
// core that finishes a call finds the next one there instead of idling
// until one arrives. 0 before the first full bucket.
//
// The shortest call is the one that waited least: a mean would count the
// queueing, and the limit would follow the load instead of the capacity.
// Buckets with fewer than a tenth of the busiest one's calls say too
// little and are left out, so that a quiet moment's one fast call does not
// make the limit; a fast call among many (an early error, a cache hit)
// still lowers it.
func (l *Limiter) limit(now time.Time) int64 {
	cur := now.UnixNano() / int64(l.bucket)
	l.mu.Lock()
	var maxPass int64
	for _, b := range l.ring {
		if l.complete(b, cur) {
			maxPass = max(maxPass, b.pass)
		}
	}
	rt := time.Duration(math.MaxInt64)
	for _, b := range l.ring {
		if l.complete(b, cur) && b.pass*10 >= maxPass {
			rt = min(rt, b.minRT)
		}
	}
	l.mu.Unlock()
	if maxPass == 0 {
		return 0
	}
	perSecond := float64(maxPass) * float64(time.Second) / float64(l.bucket)
	n := int64(math.Ceil(perSecond * rt.Seconds()))
	return n + int64(math.Ceil(l.cores))
}

// complete reports whether b is a bucket of the window before cur, the
// current one, that saw calls complete.
func (l *Limiter) complete(b bucket, cur int64) bool {
	return b.id < cur && b.id > cur-int64(len(l.ring)) && b.pass > 0
}

// record counts a call completed at end that took rt.
func (l *Limiter) record(end time.Time, rt time.Duration) {
	id := end.UnixNano() / int64(l.bucket)
	rt = max(rt, time.Microsecond)
	l.mu.Lock()
	b := &l.ring[id%int64(len(l.ring))]
	if b.id != id {
		*b = bucket{id: id}
	}
	b.pass++
	if b.minRT == 0 || rt < b.minRT {
		b.minRT = rt
	}
	l.mu.Unlock()
}

// Stats returns the limiter's state now.
func (l *Limiter) Stats() Stats {
	return Stats{Limit: l.limit(l.now()), InFlight: l.inflight.Load(), Shed: l.shed.Load(), CPU: l.CPU(), Cores: l.cores}
}
