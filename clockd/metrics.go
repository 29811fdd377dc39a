package clockd

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics.
type metrics struct {
	forwardJumps prometheus.Counter
	refused      prometheus.Counter
	probeErrors  prometheus.Counter
	healthy      prometheus.Gauge
	bound        prometheus.Gauge
	offset       *prometheus.GaugeVec
	rtt          *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		forwardJumps: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pleiades", Subsystem: "clockd", Name: "forward_jumps_total", Help: "Forward jumps of the physical clock beyond the threshold."}),
		refused:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pleiades", Subsystem: "clockd", Name: "updates_refused_total", Help: "Update calls refused (timestamp too far ahead)."}),
		probeErrors:  prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pleiades", Subsystem: "clockd", Name: "probe_errors_total", Help: "Failed offset probes."}),
		healthy:      prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "pleiades", Subsystem: "clockd", Name: "healthy", Help: "1 when the remote clock monitor judges the clock healthy."}),
		bound:        prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "pleiades", Subsystem: "clockd", Name: "persisted_bound_seconds", Help: "Persisted wall-time upper bound, Unix seconds."}),
		offset:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "pleiades", Subsystem: "clockd", Name: "peer_offset_seconds", Help: "Estimated peer clock minus local clock."}, []string{"peer"}),
		rtt:          prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "pleiades", Subsystem: "clockd", Name: "peer_rtt_seconds", Help: "Round trip of the last probe."}, []string{"peer"}),
	}
	m.healthy.Set(1)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.forwardJumps, m.refused, m.probeErrors, m.healthy, m.bound, m.offset, m.rtt} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("clockd: register metrics: %w", err)
		}
	}
	return m, nil
}
