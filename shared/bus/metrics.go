package bus

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pleiades-db/pleiades/shared/wire"
)

type metrics struct {
	calls      *prometheus.CounterVec
	callDur    *prometheus.HistogramVec
	handled    *prometheus.CounterVec
	handledDur *prometheus.HistogramVec
	sent       prometheus.Counter
	received   prometheus.Counter
	conns      prometheus.Gauge
	dials      *prometheus.CounterVec
	idleCloses prometheus.Counter
	callsSrv   prometheus.Gauge
	denied     *prometheus.CounterVec
	localCalls prometheus.Counter
	tcpCalls   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	buckets := prometheus.ExponentialBuckets(25e-6, 2, 18) // 25µs .. ~3.3s
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pleiades_bus_calls_total", Help: "Calls made (unary and stream), by protocol, method and result code.",
		}, []string{"protocol", "method", "code"}),
		callDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pleiades_bus_call_duration_seconds", Help: "Caller-side duration of calls.", Buckets: buckets,
		}, []string{"protocol", "method"}),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pleiades_bus_handled_total", Help: "Calls and batches handled, by protocol, method and result code.",
		}, []string{"protocol", "method", "code"}),
		handledDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pleiades_bus_handler_duration_seconds", Help: "Handler duration.", Buckets: buckets,
		}, []string{"protocol", "method"}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pleiades_bus_sent_bytes_total", Help: "Bytes of preambles and frames sent, datagrams included.",
		}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pleiades_bus_received_bytes_total", Help: "Bytes of preambles and frames received, datagrams included.",
		}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pleiades_bus_connections", Help: "Open QUIC connections (dialed and accepted).",
		}),
		dials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pleiades_bus_dials_total", Help: "Connection attempts by result (ok, error).",
		}, []string{"result"}),
		idleCloses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pleiades_bus_idle_closes_total", Help: "Dialed connections closed after IdleTimeout without calls, batches or datagrams.",
		}),
		callsSrv: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pleiades_bus_calls_streams", Help: "Calls streams served: one per connection on which a peer makes unary calls.",
		}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pleiades_bus_denied_total", Help: "Calls, batches and datagrams refused by authorization, by protocol, method and the caller's role.",
		}, []string{"protocol", "method", "role"}),
		localCalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pleiades_bus_local_calls_total", Help: "Unary calls made over a peer's local (Unix domain) socket instead of QUIC.",
		}),
		tcpCalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pleiades_bus_tcp_calls_total", Help: "Unary calls with a large request made over TCP instead of QUIC.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.calls, m.callDur, m.handled, m.handledDur, m.sent, m.received, m.conns, m.dials, m.idleCloses, m.callsSrv, m.denied, m.localCalls, m.tcpCalls} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("bus: metrics already registered (one Bus per registry): %w", err)
			}
			return nil, fmt.Errorf("bus: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) observeCall(p wire.Protocol, method string, err error, start time.Time) {
	ps := p.String()
	m.calls.WithLabelValues(ps, method, CodeOf(err).String()).Inc()
	m.callDur.WithLabelValues(ps, method).Observe(time.Since(start).Seconds())
}

func (m *metrics) observeHandled(p wire.Protocol, method string, code Code, start time.Time) {
	ps := p.String()
	m.handled.WithLabelValues(ps, method, code.String()).Inc()
	m.handledDur.WithLabelValues(ps, method).Observe(time.Since(start).Seconds())
}
