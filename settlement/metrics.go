package settlement

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/internal/promreg"
)

// Failure reasons, the values of the failed_total metric's reason label.
const (
	FailReverted  = "reverted"   // included, but the receipt says it reverted
	FailNonceUsed = "nonce_used" // the nonce was consumed by another transaction
	FailExpired   = "expired"    // not included within MaxAge
	FailRejected  = "rejected"   // the node refused the transaction as invalid
)

// Drop reasons, the values of the dropped_total metric's reason label.
const (
	dropFull         = "full"                // MaxPending reached
	dropBytes        = "bytes"               // MaxRawBytes reached
	dropEvicted      = "evicted_uncertified" // an offered tx made room for a certified one
	dropUncertified  = "uncertified_expired" // offered, never certified within MaxAge
	dropMismatch     = "effects_mismatch"    // offered bytes do not match the QC's effects
	sendUnavailable  = "unavailable"
	sendTransient    = "rejected_transient"
	sendPermanent    = "rejected_permanent"
	attemptFirst     = "first"
	attemptResend    = "resend"
	includedSuccess  = "success"
	includedReverted = "reverted"
	includedNoRaw    = "nonce_only"
)

type metrics struct {
	sent        *prometheus.CounterVec
	sendErrors  *prometheus.CounterVec
	included    *prometheus.CounterVec
	finalized   prometheus.Counter
	reverted    prometheus.Counter
	failed      *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	pending     prometheus.Gauge
	unavailable prometheus.Gauge
	toIncluded  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "allegro", Subsystem: "settlement", Name: name, Help: help}
	}
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts(opts("sent_total",
			"Certified transactions sent to the chain, by attempt (first or resend).")), []string{"attempt"}),
		sendErrors: prometheus.NewCounterVec(prometheus.CounterOpts(opts("send_errors_total",
			"Failed sends: chain unavailable, transient rejection (retried), permanent rejection.")), []string{"kind"}),
		included: prometheus.NewCounterVec(prometheus.CounterOpts(opts("included_total",
			"Certified transactions seen included: success, reverted, or nonce_only (inclusion known from the nonce, no raw bytes held).")), []string{"result"}),
		finalized: prometheus.NewCounter(prometheus.CounterOpts(opts("finalized_total",
			"Certified transactions reported FINALIZED."))),
		reverted: prometheus.NewCounter(prometheus.CounterOpts(opts("reverted_total",
			"Certified transactions included but reverted."))),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts(opts("failed_total",
			"Settlement failures reported, by reason.")), []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts(opts("dropped_total",
			"Transactions refused or forgotten without a settlement outcome, by reason.")), []string{"reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts(opts("pending",
			"Transactions tracked (offered or certified, not yet finalized or failed)."))),
		unavailable: prometheus.NewGauge(prometheus.GaugeOpts(opts("chain_unavailable",
			"1 while the chain does not answer settlement requests."))),
		toIncluded: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "allegro", Subsystem: "settlement", Name: "certified_to_included_seconds",
			Help:    "Time from learning a transaction's QC to seeing it included.",
			Buckets: prometheus.ExponentialBuckets(0.125, 2, 14), // 125 ms to ~17 min
		}),
	}
	for _, r := range []string{FailReverted, FailNonceUsed, FailExpired, FailRejected} {
		m.failed.WithLabelValues(r)
	}
	if _, err := promreg.Register("settlement", reg, m.sent, m.sendErrors, m.included, m.finalized, m.reverted, m.failed, m.dropped,
		m.pending, m.unavailable, m.toIncluded); err != nil {
		return nil, err
	}
	return m, nil
}
