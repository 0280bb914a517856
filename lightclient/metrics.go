package lightclient

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/internal/promreg"
)

// QC outcomes, the values of the "result" label of
// allegro_lightclient_qcs_total.
const (
	resultReported  = "reported"
	resultDuplicate = "duplicate"
	resultUnwatched = "unwatched"
	resultConflict  = "conflict"
	resultRejected  = "rejected"
)

type metrics struct {
	qcs        *prometheus.CounterVec
	dropped    prometheus.Counter
	watched    prometheus.Gauge
	conflict   prometheus.Counter
	registered *promreg.Set
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		qcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "allegro_lightclient_qcs_total",
			Help: "QCs handled by the light client by result: reported (a payment to a watched address), duplicate, unwatched (valid, for another address of a joined shard), conflict (a second QC for a contention key: a safety violation), rejected (failed the client's own verification).",
		}, []string{"result"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "allegro_lightclient_payments_dropped_total",
			Help: "Payments discarded because the Payments channel was full (the oldest unread one is dropped).",
		}),
		watched: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "allegro_lightclient_watched_addresses",
			Help: "Addresses the light client watches.",
		}),
		conflict: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "allegro_lightclient_safety_violations_total",
			Help: "Conflicting valid QCs seen (two QCs for one contention key with different transactions or effects).",
		}),
	}
	for _, r := range []string{resultReported, resultDuplicate, resultUnwatched, resultConflict, resultRejected} {
		m.qcs.WithLabelValues(r)
	}
	set, err := promreg.Register("lightclient", reg, m.qcs, m.dropped, m.watched, m.conflict)
	if err != nil {
		return nil, err
	}
	m.registered = set
	return m, nil
}

func (m *metrics) unregister() { m.registered.Unregister() }
