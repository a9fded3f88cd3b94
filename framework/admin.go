package framework

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/svckit/svckit/framework/naming"
)

// adminHandler serves /metrics, /healthz, /readyz and /debug/pprof/.
func (a *App) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	// /readyz: "ready" or "not ready", then a line on the registration or
	// on why not, e.g. "registration lost (…)" while etcd is away.
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ready, detail := a.readiness()
		if !ready {
			http.Error(w, "not ready\n"+detail, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n" + detail + "\n"))
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// registrarCollector exports the state of the registrar: whether it is
// registered, and with RegistrarStatus its counts and keepalive age.
type registrarCollector struct {
	a                               *App
	registered, regs, losses, kaAge *prometheus.Desc
}

func newRegistrarCollector(a *App) *registrarCollector {
	return &registrarCollector{
		a:          a,
		registered: prometheus.NewDesc("svckit_registered", "1 while the instance's record is live.", nil, nil),
		regs:       prometheus.NewDesc("svckit_registrations_total", "Puts of the instance's etcd record, the first included.", nil, nil),
		losses:     prometheus.NewDesc("svckit_registration_losses_total", "Losses of the lease or the key, each followed by registering again.", nil, nil),
		kaAge:      prometheus.NewDesc("svckit_keepalive_age_seconds", "Seconds since the last lease keepalive response.", nil, nil),
	}
}

func (c *registrarCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.registered
	ch <- c.regs
	ch <- c.losses
	ch <- c.kaAge
}

func (c *registrarCollector) Collect(ch chan<- prometheus.Metric) {
	reg := c.a.registrar()
	if reg == nil {
		return
	}
	v := 0.0
	if reg.Registered() {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(c.registered, prometheus.GaugeValue, v)
	rs, ok := reg.(RegistrarStatus)
	if !ok {
		return
	}
	st := rs.Status()
	ch <- prometheus.MustNewConstMetric(c.regs, prometheus.CounterValue, float64(st.Registrations))
	ch <- prometheus.MustNewConstMetric(c.losses, prometheus.CounterValue, float64(st.Losses))
	if !st.LastKeepAlive.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.kaAge, prometheus.GaugeValue, sinceSeconds(st.LastKeepAlive))
	}
}

// etcdRegistrar adapts naming.Registrar to Registrar; its Status makes it a
// RegistrarStatus.
type etcdRegistrar struct{ *naming.Registrar }

func (r etcdRegistrar) Registered() bool {
	return r.Status().State == naming.StateRegistered
}
