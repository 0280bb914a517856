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
	}
	if _, err := promreg.Register("bulletin", reg, m.certs, m.qcs, m.evidence, m.subscriberDrops); err != nil {
		return nil, err
	}
	return m, nil
}
