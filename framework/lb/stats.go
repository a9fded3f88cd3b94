package lb

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Constants of the latency estimate. tau is the decay time of the peak
// EWMA: Finagle and go-zero (p2c.go: decayTime = 10s) use 10s; measured here
// (bench/ BenchmarkTail, 32 callers, one server 20 ms slower), 1s lets a
// fast server's queueing spike fade before it drives calls to the slow one,
// which took its share from 0.76 % to 0.42–0.48 %. forceGap is how long an
// endpoint may go unpicked before p2c takes it the next time it is one of
// the two candidates (go-zero p2c.go: forcePick = 1s; kratos p2c: 3s), and
// staleAfter how old an estimate may be before the next sample replaces it
// rather than blending with it, half of forceGap so that a forced pick's
// sample always does: together they bring an endpoint back within about
// two seconds whatever its last sample, where a decay of the estimate
// alone takes time in proportion to the log of how far it must fall (a
// 3 s sample against 100 µs neighbours: ten time constants). failPenalty is
// the latency a failed call counts as, far above any healthy call.
const (
	tau         = time.Second
	forceGap    = time.Second
	staleAfter  = forceGap / 2
	failPenalty = 250 * time.Millisecond
	minLatency  = time.Microsecond
)

// epoch anchors the monotonic clock the stats use. Set once when the
// package loads and only read after, so not mutable state.
var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }

// endpointStats is what the balancer knows of one endpoint. It lives in the
// balancer's EndpointMap, so it survives picker rebuilds. Picks read it
// without a lock; observe serialises the writers of the estimate on mu.
type endpointStats struct {
	inflight atomic.Int64
	ewma     atomic.Uint64 // float64 bits: latency estimate in ns; 0 until the first call ends
	picked   atomic.Int64  // nanotime of the last pick
	calls    atomic.Int64
	failures atomic.Int64
	failing  atomic.Bool // the last call failed

	// Outlier detection: the calls of the interval under way by their
	// result, counted by countDone (count, bound once), and, under the
	// balancer's mu, when the endpoint was ejected (zero: it is not) and
	// A50's ejection time multiplier.
	okCalls, badCalls atomic.Int64
	countDone         func(balancer.DoneInfo)
	ejectedAt         time.Time
	ejections         int

	mu   sync.Mutex // serialises observe
	last int64      // nanotime of the last sample
	// penalised says that ewma holds a failure penalty that no successful
	// call has answered yet, base what ewma was before it (0: cold),
	// baseAt the nanotime of base's last sample, and penaltyAt the nanotime
	// of the latest failure.
	penalised bool
	base      float64
	baseAt    int64
	penaltyAt int64
}

func newEndpointStats() *endpointStats {
	s := &endpointStats{}
	s.countDone = s.count
	return s
}

// latency returns the estimate, and whether there is one.
func (s *endpointStats) latency() (float64, bool) {
	e := math.Float64frombits(s.ewma.Load())
	return e, e != 0
}

// decay is 1/(1+x+x²/2) ≈ e^-x for x ≥ 0: monotone, 1 at 0, toward 0, and
// a tenth of the cost of math.Exp on the pick and done paths.
func decay(x float64) float64 {
	if x <= 0 {
		return 1
	}
	return 1 / (1 + x + x*x/2)
}

// observe feeds one finished call into the peak EWMA. A unary call (or one
// of unknown kind) is a sample of its duration; a stream is none, as its
// duration measures the caller's use of it, not the endpoint's speed. A
// failed call of any kind counts as failPenalty, or its duration if longer
// and not a stream. A slower sample replaces the estimate at once, a faster
// one pulls it down with weight 1-e^(-Δt/τ), or replaces it when the
// estimate is older than staleAfter.
//
// A stream that did not fail, got an answer from the endpoint (it ended
// OK, or the caller ended it after a response) and started after the
// latest failure puts back the estimate the endpoint had before a failure
// penalty that nothing has diluted since, or clears it (cold) if that
// estimate is older than staleAfter: streams take no samples, so without
// this one failed stream would keep an endpoint that serves only streams
// at failPenalty, and out of every pick but the forced ones, for good. A
// stream opened before the failure says nothing of the endpoint since,
// so it leaves the penalty in place.
func (s *endpointStats) observe(now int64, rtt time.Duration, failed, answered bool, kind callKind) {
	s.calls.Add(1)
	s.failing.Store(failed)
	if failed {
		s.failures.Add(1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := math.Float64frombits(s.ewma.Load())
	switch {
	case failed:
		if !s.penalised {
			s.penalised, s.base, s.baseAt = true, prev, s.last
		}
		s.penaltyAt = now
		if kind == kindStream {
			rtt = failPenalty
		} else {
			rtt = max(rtt, failPenalty)
		}
	case kind == kindStream:
		if started := now - int64(rtt); s.penalised && answered && started > s.penaltyAt {
			s.penalised = false
			restored := s.base
			if now-s.baseAt > int64(staleAfter) {
				restored = 0
			}
			s.ewma.Store(math.Float64bits(restored))
		}
		return
	default:
		s.penalised = false
	}
	v := float64(max(rtt, minLatency))
	next := v
	if idle := now - s.last; prev != 0 && v < prev && idle <= int64(staleAfter) {
		w := decay(float64(idle) / float64(tau))
		next = prev*w + v*(1-w)
	}
	s.ewma.Store(math.Float64bits(next))
	s.last = now
}

// failed reports whether err says the endpoint, not the request, failed.
func failed(err error) bool {
	if err == nil {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.DataLoss,
		codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

// call carries one RPC's start to its Done without allocating: calls are
// pooled and done is bound once per call object.
type call struct {
	stats *endpointStats
	start int64
	kind  callKind
	child func(balancer.DoneInfo)
	done  func(balancer.DoneInfo)
}

// callPool recycles call objects: a cache, not state (a Get may return a
// fresh one at any time).
var callPool sync.Pool

func init() {
	callPool.New = func() any {
		c := &call{}
		c.done = c.finish
		return c
	}
}

// startCall counts a call of kind on s in flight until the returned Done.
func startCall(s *endpointStats, now int64, kind callKind, child func(balancer.DoneInfo)) func(balancer.DoneInfo) {
	s.inflight.Add(1)
	c := callPool.Get().(*call)
	c.stats, c.start, c.kind, c.child = s, now, kind, child
	return c.done
}

func (c *call) finish(info balancer.DoneInfo) {
	now := nanotime()
	c.stats.observe(now, time.Duration(now-c.start), failed(info.Err), info.Err == nil || info.BytesReceived, c.kind)
	c.stats.inflight.Add(-1)
	child := c.child
	c.stats, c.child = nil, nil
	callPool.Put(c)
	if child != nil {
		child(info)
	}
}
