package supervisor

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The supervisor's metrics, read from its children's records at each
// scrape (so they cannot drift from Status), on the registry given in
// Deps.Registerer: the supervisor's admin endpoint serves them on
// /metrics. The daemon label is the child's name ("raftd",
// "node2/raftd").
var (
	descReady = prometheus.NewDesc("pleiades_supervisor_daemon_ready",
		"Whether the daemon answers 200 on its /readyz (1) or not (0).", []string{"daemon"}, nil)
	descState = prometheus.NewDesc("pleiades_supervisor_daemon_state",
		"The daemon's lifecycle state: 1 for the current one, 0 for the others.", []string{"daemon", "state"}, nil)
	descRestarts = prometheus.NewDesc("pleiades_supervisor_daemon_restarts_total",
		"Restarts of the daemon after it exited or failed to start.", []string{"daemon"}, nil)
	descExits = prometheus.NewDesc("pleiades_supervisor_daemon_exits_total",
		"Unwanted ends of the daemon, by kind: exit (it exited), signal (a signal killed it), start_failed (it could not be started).",
		[]string{"daemon", "kind"}, nil)
)

// states lists every State, for the state metric.
var states = []State{StatePending, StateStarting, StateReady, StateBackoff, StateStopping, StateStopped, StateFailed}

// collector is the supervisor's prometheus.Collector.
type collector struct{ s *Supervisor }

// Describe implements prometheus.Collector.
func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReady, descState, descRestarts, descExits} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.s.procs {
		p.mu.Lock()
		st := p.mu.st
		exits := map[string]int{exitCode: p.mu.exits[exitCode], exitSignal: p.mu.exits[exitSignal], exitStartFailed: p.mu.exits[exitStartFailed]}
		p.mu.Unlock()
		ready := 0.0
		if st.Ready {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready, st.Name)
		for _, s := range states {
			v := 0.0
			if st.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, st.Name, string(s))
		}
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(st.Restarts), st.Name)
		for kind, n := range exits {
			ch <- prometheus.MustNewConstMetric(descExits, prometheus.CounterValue, float64(n), st.Name, kind)
		}
	}
}
