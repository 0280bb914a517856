package sidecar

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/internal/promreg"
)

type sidecarMetrics struct {
	submissions *prometheus.CounterVec
	meshTxs     *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	syncs       *prometheus.CounterVec
	closes      *prometheus.CounterVec
	reannounced prometheus.Counter
	// doppelganger is 1 once another process was seen signing with this
	// validator's key.
	doppelganger prometheus.Gauge
	awaitingQC   prometheus.GaugeFunc
}

// newSidecarMetrics registers the sidecar's metrics; awaitingQC reads how
// many signed transactions wait for their QC.
func newSidecarMetrics(reg prometheus.Registerer, awaitingQC func() float64) (*sidecarMetrics, error) {
	m := &sidecarMetrics{
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "sidecar", Name: "submissions_total",
			Help: "Client submissions by result (accepted or reject code).",
		}, []string{"result"}),
		meshTxs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "sidecar", Name: "mesh_transactions_total",
			Help: "Transactions from the mesh by result (accepted or reject code).",
		}, []string{"result"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "sidecar", Name: "dropped_total",
			Help: "Mesh transactions dropped: queue_full, parking_full, park_expired; announcements dropped: announce_queue_full.",
		}, []string{"reason"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "sidecar", Name: "sync_batches_total",
			Help: "Anti-entropy batches sent, received, answered (the peer's answer to a batch sent), refused as invalid, or holding invalid items (invalid_items: a signature failed, items were then checked one by one and the invalid ones dropped).",
		}, []string{"result"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "sidecar", Name: "closes_total",
			Help: "Closes of the previous committee received while entering an epoch: adopted (the first of its seat), refused (does not verify: evidence against its signer).",
		}, []string{"result"}),
		reannounced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "sidecar", Name: "reannounced_total",
			Help: "Signed transactions announced again to the committee because they had no QC yet.",
		}),
		doppelganger: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "allegro", Subsystem: "sidecar", Name: "doppelganger_detected",
			Help: "1 once a certificate by this validator's key that its data directory never signed was seen during the doppelganger window: the sidecar no longer signs.",
		}),
		awaitingQC: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "allegro", Subsystem: "sidecar", Name: "awaiting_qc",
			Help: "Transactions this validator signed that wait for their QC: announced again until it comes, they expire, their nonce settles, or another transaction's QC takes their nonce.",
		}, awaitingQC),
	}
	// Drop counters exist at zero from the start, so rates and alerts on
	// them work before the first drop.
	for _, reason := range []string{"queue_full", "parking_full", "park_expired", "announce_queue_full"} {
		m.dropped.WithLabelValues(reason)
	}
	for _, result := range []string{"adopted", "refused"} {
		m.closes.WithLabelValues(result)
	}
	if _, err := promreg.Register("sidecar", reg, m.submissions, m.meshTxs, m.dropped, m.syncs, m.closes, m.reannounced, m.doppelganger, m.awaitingQC); err != nil {
		return nil, err
	}
	return m, nil
}
