package cniserver

import (
	"errors"
	"strconv"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the CNI server's Prometheus metrics.
type Metrics struct {
	requests       *prometheus.HistogramVec
	annotationWait prometheus.Histogram
	installWait    prometheus.Histogram
}

var cniBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kovn", Subsystem: "cni", Name: "request_duration_seconds",
			Help:    "Time to serve a CNI request, by command and result (ok, or the CNI error code).",
			Buckets: cniBuckets,
		}, []string{"command", "result"}),
		annotationWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "kovn", Subsystem: "cni", Name: "annotation_wait_seconds",
			Help:    "Time an ADD waited for the pod's network annotation from the controller.",
			Buckets: cniBuckets,
		}),
		installWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "kovn", Subsystem: "cni", Name: "ovn_installed_wait_seconds",
			Help:    "Time an ADD waited for ovn-controller to mark the pod's port ovn-installed.",
			Buckets: cniBuckets,
		}),
	}
	reg.MustRegister(m.requests, m.annotationWait, m.installWait)
	return m
}

func (m *Metrics) observeRequest(command string, err error, d time.Duration) {
	result := "ok"
	if err != nil {
		result = "error"
		var e *types.Error
		if errors.As(err, &e) {
			result = "error-" + strconv.FormatUint(uint64(e.Code), 10)
		}
	}
	m.requests.WithLabelValues(command, result).Observe(d.Seconds())
}
