package postgres

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's Prometheus collectors; see Store.Collectors.
type metrics struct {
	latency         *prometheus.HistogramVec
	errors          *prometheus.CounterVec
	changesSent     prometheus.Counter
	changesReceived prometheus.Counter
	listenerUp      prometheus.Gauge
}

func newMetrics() *metrics {
	return &metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portcullis_store_statement_duration_seconds",
			Help:    "Time the shared store's operations took on the database, by operation (get, put, put_sync, delete, keys, get_or_create, create, sweep).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_store_errors_total",
			Help: "Operations of the shared store that failed (not counting a key not found), by operation.",
		}, []string{"operation"}),
		changesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portcullis_store_changes_sent_total",
			Help: "Changed keys this node sent to every node's change feed (cache invalidations).",
		}),
		changesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portcullis_store_changes_received_total",
			Help: "Changed keys this node received from the change feed, its own writes included.",
		}),
		listenerUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portcullis_store_listener_up",
			Help: "1 while this node's listening connection receives changes (its caches are trusted), 0 while it is down.",
		}),
	}
}

// observe records one operation; failed is false for a key not found and for the caller's own
// cancellation.
func (m *metrics) observe(op string, took time.Duration, failed bool) {
	m.latency.WithLabelValues(op).Observe(took.Seconds())
	if failed {
		m.errors.WithLabelValues(op).Inc()
	}
}

// Collectors returns the store's metrics, for a Prometheus registry (Caddy's): the latency of
// its operations (portcullis_store_statement_duration_seconds, by operation), their errors
// (portcullis_store_errors_total, by operation), the changed keys sent and received by the change
// feed (portcullis_store_changes_sent_total, portcullis_store_changes_received_total) and whether
// the listening connection is up (portcullis_store_listener_up). Each Store has its own
// collectors with the same names: register one Store's in a registry.
func (s *Store) Collectors() []prometheus.Collector {
	m := s.metrics
	return []prometheus.Collector{m.latency, m.errors, m.changesSent, m.changesReceived, m.listenerUp}
}
