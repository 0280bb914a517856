package chain

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/internal/promreg"
)

// Request outcomes (label "outcome" of allegro_chain_rpc_requests_total).
const (
	outcomeOK          = "ok"
	outcomeReverted    = "reverted"    // eth_call reverted
	outcomeRPCError    = "rpc_error"   // the node answered with a JSON-RPC error
	outcomeMalformed   = "malformed"   // the answer could not be decoded or failed checks
	outcomeTimeout     = "timeout"     // RequestTimeout (or the caller's deadline) expired
	outcomeUnreachable = "unreachable" // transport failure
)

type metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	cache      *prometheus.CounterVec
	headNumber prometheus.Gauge
	headDrops  prometheus.Counter
	reconnects prometheus.Counter
	malformed  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "chain", Name: "rpc_requests_total",
			Help: "JSON-RPC requests to the chain node by method and outcome (ok, reverted, rpc_error, malformed, timeout, unreachable).",
		}, []string{"method", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "allegro", Subsystem: "chain", Name: "rpc_request_duration_seconds",
			Help:    "Duration of JSON-RPC requests to the chain node by method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "chain", Name: "state_cache_total",
			Help: "State reads by result: hit (answered from the cache), shared (joined an identical in-flight request), miss (sent to the node).",
		}, []string{"result"}),
		headNumber: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "allegro", Subsystem: "chain", Name: "head_number",
			Help: "Number of the newest chain head seen.",
		}),
		headDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "chain", Name: "head_subscriber_drops_total",
			Help: "Heads not delivered to a SubscribeHeads subscriber whose channel was full.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "chain", Name: "follower_failures_total",
			Help: "Times the head follower lost the node and scheduled a retry.",
		}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "allegro", Subsystem: "chain", Name: "malformed_heads_total",
			Help: "newHeads notifications that could not be decoded and were skipped.",
		}),
	}
	if _, err := promreg.Register("chain", reg, m.requests, m.duration, m.cache, m.headNumber, m.headDrops, m.reconnects, m.malformed); err != nil {
		return nil, err
	}
	return m, nil
}
