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
// which took its share from 0.76 % to 0.42–0.48 %; idleTau is how fast
// an endpoint nobody picks looks cheaper again, so that a recovered endpoint
// is probed within tens of seconds rather than never; failPenalty is the
// latency a failed call counts as, far above any healthy call.
const (
	tau         = time.Second
	idleTau     = 2 * time.Second
	failPenalty = 250 * time.Millisecond
	minLatency  = time.Microsecond
)

// epoch anchors the monotonic clock the stats use.
var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }

// endpointStats is what the balancer knows of one endpoint. It lives in the
// balancer's EndpointMap, so it survives picker rebuilds.
type endpointStats struct {
	inflight atomic.Int64
	ewma     atomic.Uint64 // float64 bits: latency estimate in ns; 0 until the first call ends
	last     atomic.Int64  // nanotime of the last observation
	calls    atomic.Int64
	failures atomic.Int64
	failing  atomic.Bool // the last call failed
}

func newEndpointStats() *endpointStats { return &endpointStats{} }

// latency returns the estimate decayed by the time since it was last fed,
// and whether there is one.
func (s *endpointStats) latency(now int64) (float64, bool) {
	e := math.Float64frombits(s.ewma.Load())
	if e == 0 {
		return 0, false
	}
	if idle := float64(now-s.last.Load()) / float64(idleTau); idle > 0 {
		e *= decay(idle)
	}
	return e, true
}

// decay is 1/(1+x+x²/2) ≈ e^-x for x ≥ 0: monotone, 1 at 0, toward 0, and
// a tenth of the cost of math.Exp on the pick and done paths.
func decay(x float64) float64 {
	if x <= 0 {
		return 1
	}
	return 1 / (1 + x + x*x/2)
}

// observe feeds one finished call into the peak EWMA: a slower call
// replaces the estimate at once, a faster one pulls it down with weight
// 1-e^(-Δt/τ).
func (s *endpointStats) observe(now int64, rtt time.Duration, failed bool) {
	s.calls.Add(1)
	s.failing.Store(failed)
	if failed {
		s.failures.Add(1)
		rtt = max(rtt, failPenalty)
	}
	v := float64(max(rtt, minLatency))
	for {
		old := s.ewma.Load()
		prev := math.Float64frombits(old)
		next := v
		if prev != 0 && v < prev {
			w := decay(float64(now-s.last.Load()) / float64(tau))
			next = prev*w + v*(1-w)
		}
		if s.ewma.CompareAndSwap(old, math.Float64bits(next)) {
			s.last.Store(now)
			return
		}
	}
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
	child func(balancer.DoneInfo)
	done  func(balancer.DoneInfo)
}

var callPool sync.Pool

func init() {
	callPool.New = func() any {
		c := &call{}
		c.done = c.finish
		return c
	}
}

func startCall(s *endpointStats, now int64, child func(balancer.DoneInfo)) func(balancer.DoneInfo) {
	s.inflight.Add(1)
	c := callPool.Get().(*call)
	c.stats, c.start, c.child = s, now, child
	return c.done
}

func (c *call) finish(info balancer.DoneInfo) {
	now := nanotime()
	c.stats.observe(now, time.Duration(now-c.start), failed(info.Err))
	c.stats.inflight.Add(-1)
	child := c.child
	c.stats, c.child = nil, nil
	callPool.Put(c)
	if child != nil {
		child(info)
	}
}
