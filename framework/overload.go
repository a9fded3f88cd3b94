package framework

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svckit/svckit/framework/overload"
)

// newLimiter returns the App's load shedder, with the CPU threshold of the
// configuration and the options of WithOverload; nil when --overload-cpu
// is 0.
func (o *options) newLimiter() (*overload.Limiter, error) {
	if o.config.OverloadCPU == 0 {
		return nil, nil
	}
	l, err := overload.New(append([]overload.Option{overload.WithCPUThreshold(o.config.OverloadCPU)}, o.overload...)...)
	if err != nil {
		return nil, fmt.Errorf("framework: %w", err)
	}
	return l, nil
}

// runLimiter adds the actor that samples the CPU for l.
func (a *App) runLimiter(l *overload.Limiter) {
	ctx, cancel := context.WithCancel(context.Background())
	a.Add("overload", func() error { return l.Run(ctx) }, func(error) { cancel() })
}

// overloadCollector exports a Limiter's state.
type overloadCollector struct {
	l                           *overload.Limiter
	limit, inflight, shed, util *prometheus.Desc
}

func newOverloadCollector(l *overload.Limiter) *overloadCollector {
	return &overloadCollector{
		l:        l,
		limit:    prometheus.NewDesc("svckit_overload_limit", "Calls in flight the instance has shown it can serve (0 until measured); over it, calls are shed while the CPU is busy.", nil, nil),
		inflight: prometheus.NewDesc("svckit_overload_in_flight", "Unary calls in flight.", nil, nil),
		shed:     prometheus.NewDesc("svckit_overload_shed_total", "Calls shed with RESOURCE_EXHAUSTED.", nil, nil),
		util:     prometheus.NewDesc("svckit_overload_cpu_utilization", "Share of the CPU the process may use (its cgroup's quota) that it used, smoothed.", nil, nil),
	}
}

func (c *overloadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.limit
	ch <- c.inflight
	ch <- c.shed
	ch <- c.util
}

func (c *overloadCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.l.Stats()
	ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(st.Limit))
	ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(st.InFlight))
	ch <- prometheus.MustNewConstMetric(c.shed, prometheus.CounterValue, float64(st.Shed))
	ch <- prometheus.MustNewConstMetric(c.util, prometheus.GaugeValue, st.CPU)
}
