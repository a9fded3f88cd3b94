package lb

import (
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
)

// The metrics of outlier ejection, recorded on the channel's
// MetricsRecorder (grpc.WithStatsHandler with a handler that implements
// estats.MetricsRecorder, as package client's does for Prometheus; grpc-go
// records nothing without one). The registration is global, as gRPC's
// metrics registry is, and done once, in init.
var (
	ejectionsMetric = estats.RegisterInt64Count(estats.MetricDescriptor{
		Name:        "svckit.lb.ejections",
		Description: "Outlier ejections of endpoints, by detection method.",
		Unit:        "{ejection}",
		Labels:      []string{"grpc.target", "svckit.lb.policy", "svckit.lb.method"},
	})
	ejectedMetric = estats.RegisterInt64Gauge(estats.MetricDescriptor{
		Name:        "svckit.lb.ejected",
		Description: "Endpoints ejected as outliers now.",
		Unit:        "{endpoint}",
		Labels:      []string{"grpc.target", "svckit.lb.policy"},
	})
)

// instanceFailed reports whether err says the instance failed, as outlier
// detection counts failures: see OutlierDetection.
func instanceFailed(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.DataLoss:
		return true
	}
	return false
}

// count is the Done of a call picked with no Done of its own: it counts
// the call toward the endpoint's outlier detection. Bound once per
// endpoint (endpointStats.countDone), so that a pick allocates nothing.
func (s *endpointStats) count(info balancer.DoneInfo) {
	if instanceFailed(info.Err) {
		s.badCalls.Add(1)
	} else {
		s.okCalls.Add(1)
	}
}

// countingPicker is an endpoint's picker while outlier detection is on: it
// counts each call's result, then runs the Done of the endpoint's own
// picker, if any.
type countingPicker struct {
	child balancer.Picker
	stats *endpointStats
}

var _ balancer.Picker = (*countingPicker)(nil)

func (p *countingPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	res, err := p.child.Pick(info)
	if err != nil {
		return res, err
	}
	res.Done = p.stats.counted(res.Done)
	return res, nil
}

// counted returns a Done that counts the call on s, then runs child, if
// any: countDone, or a pooled countedCall, so that it allocates nothing.
func (s *endpointStats) counted(child func(balancer.DoneInfo)) func(balancer.DoneInfo) {
	if child == nil {
		return s.countDone
	}
	c := countedPool.Get().(*countedCall)
	c.stats, c.child = s, child
	return c.done
}

// countedCall chains count and a child's Done without allocating: pooled,
// as call is.
type countedCall struct {
	stats *endpointStats
	child func(balancer.DoneInfo)
	done  func(balancer.DoneInfo)
}

// countedPool recycles countedCall objects: a cache, not state.
var countedPool sync.Pool

func init() {
	countedPool.New = func() any {
		c := &countedCall{}
		c.done = c.finish
		return c
	}
}

func (c *countedCall) finish(info balancer.DoneInfo) {
	s, child := c.stats, c.child
	c.stats, c.child = nil, nil
	countedPool.Put(c)
	s.count(info)
	child(info)
}

// ejector is the part of a balancer that keeps its endpoints' stats and
// ejects outliers among them: the owner sets the stats of its endpoints
// and the config under mu, and builds its picker without the ejected
// ones in rebuild, which sweeps call with mu held.
type ejector struct {
	name, target string
	log          *slog.Logger
	recorder     func() estats.MetricsRecorder
	rebuild      func()

	// The sweeper, started when outlier detection is first on: wake tells
	// it the config changed, stopSweeper (under mu) ends it, and close
	// waits for it on sweeping.
	wake        chan struct{}
	stopSweeper context.CancelFunc
	sweeping    sync.WaitGroup

	mu      sync.Mutex
	stats   *resolver.EndpointMap[*endpointStats]
	outlier *OutlierDetection // nil: no ejection
	sweptAt time.Time         // start of the interval under way; zero while off
	closed  bool
}

// close stops the sweeper and waits for it; no sweep runs after.
func (e *ejector) close() {
	e.mu.Lock()
	e.closed = true
	stop := e.stopSweeper
	e.mu.Unlock()
	if stop != nil {
		stop()
		e.sweeping.Wait()
	}
}

// setOutlier applies a new outlier config as A50 says: turned off, every
// endpoint is let back in and forgets its ejections; turned on, the first
// interval starts now; changed, the interval under way keeps its start.
// It reports whether the picker must be built again. Called with mu held.
func (e *ejector) setOutlier(od *OutlierDetection) (changed bool) {
	// Pickers count calls only while detection is on: turned on or off,
	// they are built again.
	changed = od.enabled() != e.outlier.enabled()
	e.outlier = od
	if !od.enabled() {
		e.sweptAt = time.Time{}
		back := false
		for _, st := range e.stats.All() {
			if !st.ejectedAt.IsZero() {
				st.ejectedAt, back = time.Time{}, true
			}
			st.ejections = 0
		}
		if back {
			e.log.Info("uneject every endpoint: outlier detection turned off")
			e.recordEjected()
		}
		return changed || back
	}
	if e.sweptAt.IsZero() {
		e.sweptAt = time.Now()
		for _, st := range e.stats.All() {
			st.okCalls.Store(0)
			st.badCalls.Store(0)
		}
	}
	if e.stopSweeper == nil {
		ctx, cancel := context.WithCancel(context.Background())
		e.stopSweeper = cancel
		e.sweeping.Add(1)
		go e.sweeper(ctx)
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return changed
}

// sweeper runs sweep at the end of each interval until ctx ends; woken, it
// reads the interval again. Close cancels it and waits.
func (e *ejector) sweeper(ctx context.Context) {
	defer e.sweeping.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		if d, ok := e.untilSweep(); ok {
			t.Reset(d)
		} else {
			t.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-t.C:
			e.sweep()
		}
	}
}

// untilSweep returns the time left in the interval under way, if outlier
// detection is on.
func (e *ejector) untilSweep() (time.Duration, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || !e.outlier.enabled() {
		return 0, false
	}
	return max(0, time.Until(e.sweptAt.Add(e.outlier.Interval))), true
}

// outlierCalls is one endpoint's calls of the interval just ended.
type outlierCalls struct {
	endpoint resolver.Endpoint
	stats    *endpointStats
	ok, bad  int64
}

func (c *outlierCalls) total() int64 { return c.ok + c.bad }

// sweep ends an interval: it ejects the outliers among the endpoints by
// their calls in it, then lets back in those whose ejection time is over
// and lowers the multiplier of those not ejected (A50's interval timer).
func (e *ejector) sweep() {
	e.mu.Lock()
	defer e.mu.Unlock()
	od := e.outlier
	if e.closed || !od.enabled() {
		return
	}
	now := time.Now()
	if now.Before(e.sweptAt.Add(od.Interval)) {
		return // the interval was made longer since the timer was set
	}
	e.sweptAt = now
	calls := make([]outlierCalls, 0, e.stats.Len())
	ejected := 0
	for ep, st := range e.stats.All() {
		calls = append(calls, outlierCalls{endpoint: ep, stats: st, ok: st.okCalls.Swap(0), bad: st.badCalls.Swap(0)})
		if !st.ejectedAt.IsZero() {
			ejected++
		}
	}
	before := ejected
	if sr := od.SuccessRateEjection; sr != nil {
		ejected = e.ejectBySuccessRate(calls, ejected)
	}
	if fp := od.FailurePercentageEjection; fp != nil {
		ejected = e.ejectByFailurePercentage(calls, ejected)
	}
	changed := ejected != before
	for i := range calls {
		st := calls[i].stats
		if st.ejectedAt.IsZero() {
			st.ejections = max(0, st.ejections-1)
			continue
		}
		if now.After(st.ejectedAt.Add(ejectionTime(od, st.ejections))) {
			e.log.Info("uneject endpoint", "addr", addrOf(calls[i].endpoint), "ejected_for", now.Sub(st.ejectedAt).Round(time.Millisecond))
			st.ejectedAt, changed = time.Time{}, true
		}
	}
	if changed {
		e.rebuild()
	}
	e.recordEjected()
}

// ejectionTime is how long the n-th ejection in a row lasts: A50's base ×
// n, capped at max(base, MaxEjectionTime).
func ejectionTime(od *OutlierDetection, n int) time.Duration {
	limit := max(od.BaseEjectionTime, od.MaxEjectionTime)
	if n <= 0 {
		return 0
	}
	if od.BaseEjectionTime > 0 && time.Duration(n) > limit/od.BaseEjectionTime {
		return limit
	}
	return min(od.BaseEjectionTime*time.Duration(n), limit)
}

// ejectBySuccessRate ejects the endpoints with enough calls whose success
// rate is below the mean less StdevFactor/1000 standard deviations, and
// returns the number ejected now.
func (e *ejector) ejectBySuccessRate(calls []outlierCalls, ejected int) int {
	sr := e.outlier.SuccessRateEjection
	judged := withVolume(calls, sr.RequestVolume)
	if len(judged) == 0 || len(judged) < int(sr.MinimumHosts) {
		return ejected
	}
	var sum, squares float64
	for _, c := range judged {
		sum += float64(c.ok) / float64(c.total())
	}
	mean := sum / float64(len(judged))
	for _, c := range judged {
		d := float64(c.ok)/float64(c.total()) - mean
		squares += d * d
	}
	required := mean - math.Sqrt(squares/float64(len(judged)))*float64(sr.StdevFactor)/1000
	for _, c := range judged {
		if rate := float64(c.ok) / float64(c.total()); rate < required {
			ejected = e.eject(c, ejected, sr.EnforcementPercentage, "success_rate", "success_rate", rate, "required", required)
		}
	}
	return ejected
}

// ejectByFailurePercentage ejects the endpoints with enough calls whose
// failed calls are more than Threshold percent, and returns the number
// ejected now.
func (e *ejector) ejectByFailurePercentage(calls []outlierCalls, ejected int) int {
	fp := e.outlier.FailurePercentageEjection
	judged := withVolume(calls, fp.RequestVolume)
	if len(judged) == 0 || len(judged) < int(fp.MinimumHosts) {
		return ejected
	}
	for _, c := range judged {
		if pct := 100 * float64(c.bad) / float64(c.total()); pct > float64(fp.Threshold) {
			ejected = e.eject(c, ejected, fp.EnforcementPercentage, "failure_percentage", "failed_percent", pct)
		}
	}
	return ejected
}

// withVolume returns the endpoints with at least volume calls, and at
// least one.
func withVolume(calls []outlierCalls, volume uint32) []*outlierCalls {
	var out []*outlierCalls
	for i := range calls {
		if c := &calls[i]; c.total() >= int64(max(volume, 1)) {
			out = append(out, c)
		}
	}
	return out
}

// eject ejects c's endpoint unless it is ejected already, MaxEjectionPercent
// of the endpoints are, or the enforcement draw says no; it logs the
// ejection with why, and returns the number of endpoints ejected.
func (e *ejector) eject(c *outlierCalls, ejected int, enforce uint32, method string, why ...any) int {
	st := c.stats
	if !st.ejectedAt.IsZero() {
		return ejected
	}
	if float64(ejected)*100/float64(e.stats.Len()) >= float64(e.outlier.MaxEjectionPercent) {
		e.log.Debug("outlier not ejected: max ejection percent", append([]any{"addr", addrOf(c.endpoint), "method", method}, why...)...)
		return ejected
	}
	if uint32(rand.IntN(100)) >= enforce {
		return ejected
	}
	st.ejectedAt = e.sweptAt
	st.ejections++
	args := append([]any{"addr", addrOf(c.endpoint), "method", method, "calls", c.total(), "failed", c.bad}, why...)
	args = append(args, "ejection", ejectionTime(e.outlier, st.ejections), "ejections_in_a_row", st.ejections)
	e.log.Info("eject endpoint", args...)
	ejectionsMetric.Record(e.recorder(), 1, e.target, e.name, method)
	return ejected + 1
}

// recordEjected sets the gauge of ejected endpoints. Called with mu held.
func (e *ejector) recordEjected() {
	n := 0
	for _, st := range e.stats.All() {
		if !st.ejectedAt.IsZero() {
			n++
		}
	}
	ejectedMetric.Record(e.recorder(), int64(n), e.target, e.name)
}

// addrOf is the address an endpoint is logged by.
func addrOf(ep resolver.Endpoint) string {
	if len(ep.Addresses) == 0 {
		return ""
	}
	return ep.Addresses[0].Addr
}
