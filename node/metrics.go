package node

import "github.com/prometheus/client_golang/prometheus"

type sidecarMetrics struct {
	submissions *prometheus.CounterVec
	meshTxs     *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	syncs       *prometheus.CounterVec
}

func newSidecarMetrics(reg prometheus.Registerer) *sidecarMetrics {
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
			Help: "Mesh transactions dropped: queue_full, parking_full, park_expired.",
		}, []string{"reason"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "sidecar", Name: "sync_batches_total",
			Help: "Anti-entropy batches sent, received, or refused as invalid.",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.submissions, m.meshTxs, m.dropped, m.syncs)
	}
	return m
}
