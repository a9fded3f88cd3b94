package lb

import (
	"context"
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
	if res.Done == nil {
		res.Done = p.stats.countDone
		return res, nil
	}
	c := countedPool.Get().(*countedCall)
	c.stats, c.child = p.stats, res.Done
	res.Done = c.done
	return res, nil
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

// setOutlier applies a new outlier config as A50 says: turned off, every
// endpoint is let back in and forgets its ejections; turned on, the first
// interval starts now; changed, the interval under way keeps its start.
// It reports whether the picker must be built again. Called with mu held.
func (b *shardedBalancer) setOutlier(od *OutlierDetection) (changed bool) {
	// Pickers count calls only while detection is on: turned on or off,
	// they are built again.
	changed = od.enabled() != b.outlier.enabled()
	b.outlier = od
	if !od.enabled() {
		b.sweptAt = time.Time{}
		back := false
		for _, st := range b.stats.All() {
			if !st.ejectedAt.IsZero() {
				st.ejectedAt, back = time.Time{}, true
			}
			st.ejections = 0
		}
		if back {
			b.log.Info("uneject every endpoint: outlier detection turned off")
			b.recordEjected()
		}
		return changed || back
	}
	if b.sweptAt.IsZero() {
		b.sweptAt = time.Now()
		for _, st := range b.stats.All() {
			st.okCalls.Store(0)
			st.badCalls.Store(0)
		}
	}
	if b.stopSweeper == nil {
		ctx, cancel := context.WithCancel(context.Background())
		b.stopSweeper = cancel
		b.sweeping.Add(1)
		go b.sweeper(ctx)
	}
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return changed
}

// sweeper runs sweep at the end of each interval until ctx ends; woken, it
// reads the interval again. Close cancels it and waits.
func (b *shardedBalancer) sweeper(ctx context.Context) {
	defer b.sweeping.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		if d, ok := b.untilSweep(); ok {
			t.Reset(d)
		} else {
			t.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		case <-t.C:
			b.sweep()
		}
	}
}

// untilSweep returns the time left in the interval under way, if outlier
// detection is on.
func (b *shardedBalancer) untilSweep() (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || !b.outlier.enabled() {
		return 0, false
	}
	return max(0, time.Until(b.sweptAt.Add(b.outlier.Interval))), true
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
func (b *shardedBalancer) sweep() {
	b.mu.Lock()
	defer b.mu.Unlock()
	od := b.outlier
	if b.closed || !od.enabled() {
		return
	}
	now := time.Now()
	if now.Before(b.sweptAt.Add(od.Interval)) {
		return // the interval was made longer since the timer was set
	}
	b.sweptAt = now
	calls := make([]outlierCalls, 0, b.stats.Len())
	ejected := 0
	for ep, st := range b.stats.All() {
		calls = append(calls, outlierCalls{endpoint: ep, stats: st, ok: st.okCalls.Swap(0), bad: st.badCalls.Swap(0)})
		if !st.ejectedAt.IsZero() {
			ejected++
		}
	}
	before := ejected
	if sr := od.SuccessRateEjection; sr != nil {
		ejected = b.ejectBySuccessRate(calls, ejected)
	}
	if fp := od.FailurePercentageEjection; fp != nil {
		ejected = b.ejectByFailurePercentage(calls, ejected)
	}
	changed := ejected != before
	for i := range calls {
		st := calls[i].stats
		if st.ejectedAt.IsZero() {
			st.ejections = max(0, st.ejections-1)
			continue
		}
		if now.After(st.ejectedAt.Add(ejectionTime(od, st.ejections))) {
			b.log.Info("uneject endpoint", "addr", addrOf(calls[i].endpoint), "ejected_for", now.Sub(st.ejectedAt).Round(time.Millisecond))
			st.ejectedAt, changed = time.Time{}, true
		}
	}
	if changed {
		b.publish()
	}
	b.recordEjected()
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
func (b *shardedBalancer) ejectBySuccessRate(calls []outlierCalls, ejected int) int {
	sr := b.outlier.SuccessRateEjection
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
			ejected = b.eject(c, ejected, sr.EnforcementPercentage, "success_rate", "success_rate", rate, "required", required)
		}
	}
	return ejected
}

// ejectByFailurePercentage ejects the endpoints with enough calls whose
// failed calls are more than Threshold percent, and returns the number
// ejected now.
func (b *shardedBalancer) ejectByFailurePercentage(calls []outlierCalls, ejected int) int {
	fp := b.outlier.FailurePercentageEjection
	judged := withVolume(calls, fp.RequestVolume)
	if len(judged) == 0 || len(judged) < int(fp.MinimumHosts) {
		return ejected
	}
	for _, c := range judged {
		if pct := 100 * float64(c.bad) / float64(c.total()); pct > float64(fp.Threshold) {
			ejected = b.eject(c, ejected, fp.EnforcementPercentage, "failure_percentage", "failed_percent", pct)
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
func (b *shardedBalancer) eject(c *outlierCalls, ejected int, enforce uint32, method string, why ...any) int {
	st := c.stats
	if !st.ejectedAt.IsZero() {
		return ejected
	}
	if float64(ejected)*100/float64(b.stats.Len()) >= float64(b.outlier.MaxEjectionPercent) {
		b.log.Debug("outlier not ejected: max ejection percent", append([]any{"addr", addrOf(c.endpoint), "method", method}, why...)...)
		return ejected
	}
	if uint32(rand.IntN(100)) >= enforce {
		return ejected
	}
	st.ejectedAt = b.sweptAt
	st.ejections++
	args := append([]any{"addr", addrOf(c.endpoint), "method", method, "calls", c.total(), "failed", c.bad}, why...)
	args = append(args, "ejection", ejectionTime(b.outlier, st.ejections), "ejections_in_a_row", st.ejections)
	b.log.Info("eject endpoint", args...)
	ejectionsMetric.Record(b.ClientConn.MetricsRecorder(), 1, b.target, b.name, method)
	return ejected + 1
}

// recordEjected sets the gauge of ejected endpoints. Called with mu held.
func (b *shardedBalancer) recordEjected() {
	n := 0
	for _, st := range b.stats.All() {
		if !st.ejectedAt.IsZero() {
			n++
		}
	}
	ejectedMetric.Record(b.ClientConn.MetricsRecorder(), int64(n), b.target, b.name)
}

// addrOf is the address an endpoint is logged by.
func addrOf(ep resolver.Endpoint) string {
	if len(ep.Addresses) == 0 {
		return ""
	}
	return ep.Addresses[0].Addr
}
