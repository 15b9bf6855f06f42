package controller

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the controller's Prometheus metrics.
type metrics struct {
	transactions *prometheus.CounterVec
	operations   prometheus.Counter
	reconcile    *prometheus.HistogramVec
	fullSync     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, c *Controller) *metrics {
	m := &metrics{
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kovn", Subsystem: "controller", Name: "nb_transactions_total",
			Help: "Northbound transactions the controller issued, by result (ok, error).",
		}, []string{"result"}),
		operations: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kovn", Subsystem: "controller", Name: "nb_operations_total",
			Help: "Operations in committed Northbound transactions.",
		}),
		reconcile: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kovn", Subsystem: "controller", Name: "reconcile_duration_seconds",
			Help:    "Time to reconcile one key, by kind (node, pod, namespace) and result (ok, error).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"kind", "result"}),
		fullSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "kovn", Subsystem: "controller", Name: "full_sync_duration_seconds",
			Help: "Duration of the last start-up full sync.",
		}),
	}
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "kovn", Subsystem: "controller", Name: "queued_keys",
		Help: "Keys waiting in the work queues (not counting rate-limited retries).",
	}, func() float64 {
		return float64(c.nodeQ.Len() + c.podQ.Len() + c.nsQ.Len() + c.svcQ.Len() + c.npQ.Len() + c.peerQ.Len())
	})
	if reg != nil {
		reg.MustRegister(m.transactions, m.operations, m.reconcile, m.fullSync, depth)
	}
	return m
}
