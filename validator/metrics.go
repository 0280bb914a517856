package validator

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/internal/promreg"
)

// Metrics of the validation pipeline.
type Metrics struct {
	decisions *prometheus.CounterVec
	latency   prometheus.Histogram
}

// NewMetrics registers the validator's metrics on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "validator", Name: "decisions_total",
			Help: "Validation outcomes: accepted, or the reject code.",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "allegro", Subsystem: "validator", Name: "validation_seconds",
			Help:    "Time to validate one submission, including the durable write.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}),
	}
	if _, err := promreg.Register("validator", reg, m.decisions, m.latency); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metrics) observe(err error, start time.Time) {
	m.latency.Observe(time.Since(start).Seconds())
	if err == nil {
		m.decisions.WithLabelValues("accepted").Inc()
		return
	}
	m.decisions.WithLabelValues(RejectCodeOf(err).String()).Inc()
}
