package msgd

import "github.com/prometheus/client_golang/prometheus"

// metrics are msgd's own metrics; NATS's figures are on /v1/nats/varz.
type metrics struct {
	routes       prometheus.Gauge
	reloads      prometheus.Counter
	reloadErrors prometheus.Counter
	published    *prometheus.CounterVec
	sourceErrors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		routes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pleiades_msgd_routes",
			Help: "Route addresses NATS is configured with (static and from gossip)."}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{Name: "pleiades_msgd_reloads_total",
			Help: "NATS configuration reloads (route or JetStream changes)."}),
		reloadErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "pleiades_msgd_reload_errors_total",
			Help: "NATS configuration reloads that failed."}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pleiades_msgd_events_published_total",
			Help: "Cluster events published on NATS, by source."}, []string{"source"}),
		sourceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pleiades_msgd_event_source_errors_total",
			Help: "Broken or refused event streams from the node's daemons, by source."}, []string{"source"}),
	}
	if reg != nil {
		reg.MustRegister(m.routes, m.reloads, m.reloadErrors, m.published, m.sourceErrors)
	}
	return m
}
