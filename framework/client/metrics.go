package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/stats"
)

// lbMetrics turns the metrics svckit's balancers record on a conn's
// MetricsRecorder into Prometheus metrics. gRPC hands a balancer the
// recorders among the conn's stats handlers, so lbMetrics is one; it does
// nothing with the calls' own events.
type lbMetrics struct {
	estats.UnimplementedMetricsRecorder
	ejections *prometheus.CounterVec
	ejected   *prometheus.GaugeVec
}

var _ estats.MetricsRecorder = (*lbMetrics)(nil)

// newLBMetrics registers the metrics on reg, or takes the ones registered
// there already (by another conn of the Client, or another Client).
func newLBMetrics(reg prometheus.Registerer) (*lbMetrics, error) {
	ejections, err := registered(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "svckit_lb_ejections_total",
		Help: "Outlier ejections of instances by svckit's balancers.",
	}, []string{"target", "policy", "method"}))
	if err != nil {
		return nil, err
	}
	ejected, err := registered(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "svckit_lb_ejected",
		Help: "Instances ejected as outliers now, by svckit's balancers.",
	}, []string{"target", "policy"}))
	if err != nil {
		return nil, err
	}
	return &lbMetrics{ejections: ejections, ejected: ejected}, nil
}

// registered registers c on reg, and returns it or the equal collector
// registered before.
func registered[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
		return c, nil
	case errors.As(err, &are):
		if old, ok := are.ExistingCollector.(C); ok {
			return old, nil
		}
	}
	return c, fmt.Errorf("register metrics: %w", err)
}

// RecordInt64Count counts svckit.lb.ejections; labels are the target, the
// policy and the method, as package lb records them.
func (m *lbMetrics) RecordInt64Count(h *estats.Int64CountHandle, incr int64, labels ...string) {
	if h.Descriptor().Name == "svckit.lb.ejections" && len(labels) == 3 {
		m.ejections.WithLabelValues(labels...).Add(float64(incr))
	}
}

// RecordInt64Gauge sets svckit.lb.ejected; labels are the target and the
// policy.
func (m *lbMetrics) RecordInt64Gauge(h *estats.Int64GaugeHandle, v int64, labels ...string) {
	if h.Descriptor().Name == "svckit.lb.ejected" && len(labels) == 2 {
		m.ejected.WithLabelValues(labels...).Set(float64(v))
	}
}

func (*lbMetrics) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (*lbMetrics) HandleRPC(context.Context, stats.RPCStats)                         {}
func (*lbMetrics) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (*lbMetrics) HandleConn(context.Context, stats.ConnStats)                       {}
