package bulletin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/internal/promreg"
)

type metrics struct {
	certs           *prometheus.CounterVec
	qcs             *prometheus.CounterVec
	evidence        prometheus.Counter
	subscriberDrops prometheus.Counter
	timeToQC        *prometheus.HistogramVec
	publishStep     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		certs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "bulletin", Name: "certificates_total",
			Help: "Certificates offered to the board: added or duplicate.",
		}, []string{"result"}),
		qcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "bulletin", Name: "qcs_total",
			Help: "QCs formed locally, received, published, or not published because one arrived first.",
		}, []string{"result"}),
		evidence: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "bulletin", Name: "equivocations_total",
			Help: "Equivocation evidence found.",
		}),
		subscriberDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "bulletin", Name: "subscriber_drops_total",
			Help: "Events lost because a subscriber lagged behind.",
		}),
		timeToQC: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "allegro", Subsystem: "bulletin", Name: "time_to_qc_seconds",
			Help: "Time from this board first learning of a transaction (an accepted submission or its first certificate) to holding its QC, by source: formed here, or received from the mesh.",
			// 1 ms to ~33 s.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"source"}),
		publishStep: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "allegro", Subsystem: "bulletin", Name: "qc_publish_step_seconds",
			Help: "The current stagger between two ranks' turns to publish a QC: publish_step, or more while the mesh's QCs come late (at most publish_step_max).",
		}),
	}
	if _, err := promreg.Register("bulletin", reg, m.certs, m.qcs, m.evidence, m.subscriberDrops, m.timeToQC, m.publishStep); err != nil {
		return nil, err
	}
	return m, nil
}
