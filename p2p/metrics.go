package p2p

import (
	"sync/atomic"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/allegro-mesh/allegro/internal/promreg"
)

// Metric names are allegro_p2p_*; the "topic" label is the topic kind
// (tx, bulletin, qc, other), never the full name, so the 16+ QC shards do
// not multiply series.
const (
	metricsNamespace = "allegro"
	metricsSubsystem = "p2p"
)

// Values of the "stage" label of allegro_p2p_validations_total: where in
// the pipeline a verdict was reached.
const (
	stageOK         = "ok"         // all stages passed
	stageLocal      = "local"      // our own publish, passed with its object
	stageSize       = "size"       // over the topic's size limit
	stageDecode     = "decode"     // not a well-formed message of the topic
	stageMembership = "membership" // sender or signer outside the committee
	stageDomain     = "domain"     // wrong chain or wrong shard for the topic
	stageVerify     = "verify"     // signature or quorum check failed
	stageDuplicate  = "duplicate"  // an equal object was accepted before
	stageFlood      = "flood"      // a peer's frames with nothing new, past its budget
	stageState      = "state"      // the caller's stateful validator decided
	stageTimeout    = "timeout"    // ValidationTimeout expired
	stagePanic      = "panic"      // a validator panicked
)

// kindIndex maps a kind to its slot in per-kind arrays; slot 0 is "other".
func kindIndex(k TopicKind) int {
	if k >= KindTx && k <= KindQC {
		return int(k)
	}
	return 0
}

var kindLabels = [4]string{"other", KindTx.String(), KindBulletin.String(), KindQC.String()}

// TopicStats are cumulative counters of one topic kind, for dashboards
// (the same numbers are exported to Prometheus).
//
// Messages are frames; the Objects counters count what frames carried.
type TopicStats struct {
	Published        uint64 // frames this node published
	ObjectsPublished uint64 // objects in them
	PublishErrors    uint64 // frames whose publish failed (local reject, closed topic), and objects refused by a full publish queue
	Accepted         uint64 // frame validations ending in Accept (local ones included)
	Ignored          uint64 // frame validations ending in Ignore (nothing new, or state-dependent)
	Rejected         uint64 // frame validations ending in Reject (panics included)
	// ObjectsReceived counts the objects of accepted frames from peers;
	// ObjectsNew those among them new to this node (delivered).
	ObjectsReceived uint64
	ObjectsNew      uint64
	Delivered       uint64 // objects handed to this node's handlers (its own included)
	Duplicates      uint64 // frame copies dropped by pubsub as already seen
	// Sent counts the frame copies this node handed to peers (its own
	// frames and those it forwards), and SentBytes their data bytes.
	Sent, SentBytes uint64
	// Outsider counts messages on validators-only topics from peers
	// outside the committee, dropped before pubsub saw them.
	Outsider uint64
	// Dropped counts messages lost to local back-pressure: full validation
	// queue, full subscription buffer (slow handler), or messages inside
	// outbound RPCs dropped because a peer's queue was full.
	Dropped uint64
}

type topicCounters struct {
	published, objectsPublished, publishErrors, accepted, ignored, rejected, objectsReceived, objectsNew, delivered, duplicates, dropped, outsider, sent, sentBytes atomic.Uint64
}

func (c *topicCounters) snapshot() TopicStats {
	return TopicStats{
		Published:        c.published.Load(),
		ObjectsPublished: c.objectsPublished.Load(),
		PublishErrors:    c.publishErrors.Load(),
		Accepted:         c.accepted.Load(),
		Ignored:          c.ignored.Load(),
		Rejected:         c.rejected.Load(),
		ObjectsReceived:  c.objectsReceived.Load(),
		ObjectsNew:       c.objectsNew.Load(),
		Delivered:        c.delivered.Load(),
		Duplicates:       c.duplicates.Load(),
		Dropped:          c.dropped.Load(),
		Outsider:         c.outsider.Load(),
		Sent:             c.sent.Load(),
		SentBytes:        c.sentBytes.Load(),
	}
}

type metrics struct {
	validations       *prometheus.CounterVec   // topic, verdict, stage
	validationSeconds *prometheus.HistogramVec // topic, verdict
	validatorPanics   *prometheus.CounterVec   // topic
	published         *prometheus.CounterVec   // topic
	publishErrors     *prometheus.CounterVec   // topic
	delivered         *prometheus.CounterVec   // topic
	handlerPanics     *prometheus.CounterVec   // topic
	objects           *prometheus.CounterVec   // topic, kind: published, received, new, skipped, queue_full
	frameSize         *prometheus.HistogramVec // topic, direction: sent, received
	certFrames        *prometheus.CounterVec   // direction: sent, received; result
	cert              struct{ sent, fallback, accepted, ignored, rejected, refused atomic.Uint64 }

	// Fed by the pubsub raw tracer.
	rpcDropped       prometheus.Counter
	rpcLost          prometheus.Counter
	linkRepairs      *prometheus.CounterVec // reason
	outboundDropped  *prometheus.CounterVec // topic
	rejected         *prometheus.CounterVec // topic, reason
	duplicates       *prometheus.CounterVec // topic
	undeliverable    *prometheus.CounterVec // topic
	outsiderDropped  *prometheus.CounterVec // topic
	throttledPeers   prometheus.Counter
	publishWaits     prometheus.Counter
	publishWaitSecs  prometheus.Counter
	stalledPeers     prometheus.Counter
	dials            *prometheus.CounterVec // result
	connectedPeers   *prometheus.GaugeVec   // class: committee, other
	committeeScore   *prometheus.GaugeVec   // member
	worstOtherScore  prometheus.Gauge
	stats            [4]topicCounters
	duplicatesByKind [4]prometheus.Counter
	framesSent       *prometheus.CounterVec // topic
	frameBytesSent   *prometheus.CounterVec // topic
	sentByKind       [4]struct{ frames, bytes prometheus.Counter }
	controlBytesSent prometheus.Counter
	controlSent      atomic.Uint64

	registered *promreg.Set
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts(opts(name, help)), labels)
	}
	m := &metrics{
		validations: counterVec("validations_total",
			"Topic validations by topic kind, verdict (accept, ignore, reject) and pipeline stage that decided.",
			"topic", "verdict", "stage"),
		validationSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "validation_duration_seconds",
			Help: "Time to validate one message, by topic kind and verdict.",
			// 20 µs (a decode) to ~2.6 s (past the default timeout).
			Buckets: prometheus.ExponentialBuckets(20e-6, 2.5, 14),
		}, []string{"topic", "verdict"}),
		validatorPanics: counterVec("validator_panics_total",
			"Panics recovered in topic validators (each counted as a Reject).", "topic"),
		published:     counterVec("published_total", "Frames published by this node.", "topic"),
		publishErrors: counterVec("publish_errors_total", "Frames whose publish failed, and objects refused by a full publish queue.", "topic"),
		delivered:     counterVec("delivered_total", "Validated objects handed to this node's handlers.", "topic"),
		objects: counterVec("frame_objects_total",
			"Objects in frames by topic kind and what happened: published (in this node's frames), received (in accepted frames from peers), new (of those, not seen before), skipped (dropped from a frame being built: accepted from a peer meanwhile), queue_full (refused by a full publish queue).",
			"topic", "kind"),
		frameSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "frame_objects",
			Help:    "Objects per frame, by topic kind and direction (sent, received).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}, []string{"topic", "direction"}),
		handlerPanics: counterVec("handler_panics_total", "Panics recovered in delivery handlers.", "topic"),
		certFrames: counterVec("cert_stream_frames_total",
			"Certificate stream frames (cert_routing entry) by direction and result: sent ok, fallback (published on the bulletin instead) or queue_full; received accept, ignore, reject, or refused (the stream: a non-member, a blocked member, too many streams).",
			"direction", "result"),
		rpcDropped: prometheus.NewCounter(prometheus.CounterOpts(opts("rpc_dropped_total",
			"Outbound RPCs dropped because a peer's queue was full (see PeerOutboundQueueSize)."))),
		rpcLost: prometheus.NewCounter(prometheus.CounterOpts(opts("rpc_lost_on_close_total",
			"RPCs still queued for a committee peer when its stream closed (discarded by pubsub without a drop event)."))),
		linkRepairs: counterVec("pubsub_link_repairs_total",
			"Peers reconnected to repair a broken pubsub link, by reason (see repair.go).", "reason"),
		outboundDropped: counterVec("outbound_messages_dropped_total",
			"Messages inside outbound RPCs dropped because a peer's queue was full.", "topic"),
		rejected: counterVec("rejected_total",
			"Messages pubsub rejected or ignored, by pubsub's reason (validation failed, validation ignored, validation queue full, ...).",
			"topic", "reason"),
		duplicates: counterVec("duplicates_total", "Message copies dropped as already seen.", "topic"),
		framesSent: counterVec("frames_sent_total", "Frame copies handed to peers (this node's frames and those it forwards).", "topic"),
		frameBytesSent: counterVec("frame_bytes_sent_total",
			"Data bytes of the frame copies handed to peers (without pubsub's envelope).", "topic"),
		controlBytesSent: prometheus.NewCounter(prometheus.CounterOpts(opts("control_bytes_sent_total",
			"Bytes of pubsub control messages (IHAVE, IWANT, IDONTWANT, GRAFT, PRUNE) handed to peers."))),
		undeliverable: counterVec("undeliverable_total", "Messages dropped because a subscription buffer was full (slow handler).", "topic"),
		outsiderDropped: counterVec("outsider_messages_dropped_total",
			"Messages on validators-only topics sent by peers outside the committee, dropped before pubsub saw them.", "topic"),
		throttledPeers: prometheus.NewCounter(prometheus.CounterOpts(opts("throttled_peers_total",
			"RPCs whose messages were ignored because the router throttled the peer."))),
		publishWaits: prometheus.NewCounter(prometheus.CounterOpts(opts("publish_backpressure_waits_total",
			"Local publishes that waited for a congested committee peer's outbound queue."))),
		publishWaitSecs: prometheus.NewCounter(prometheus.CounterOpts(opts("publish_backpressure_seconds_total",
			"Total time local publishes waited for congested outbound queues."))),
		stalledPeers: prometheus.NewCounter(prometheus.CounterOpts(opts("stalled_peers_total",
			"Committee peers marked stalled because their outbound queue did not drain within PublishBackpressureTimeout."))),
		dials: counterVec("bootstrap_dials_total", "Dials to bootstrap peers by result (ok, error).", "result"),
		connectedPeers: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("connected_peers",
			"Connected peers by class (committee, other).")), []string{"class"}),
		committeeScore: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("committee_peer_score",
			"Gossipsub score of each connected committee member.")), []string{"member"}),
		worstOtherScore: prometheus.NewGauge(prometheus.GaugeOpts(opts("other_peer_min_score",
			"Lowest gossipsub score among connected non-committee peers (0 when none)."))),
	}
	for i := range m.duplicatesByKind {
		m.duplicatesByKind[i] = m.duplicates.WithLabelValues(kindLabels[i])
		m.sentByKind[i].frames = m.framesSent.WithLabelValues(kindLabels[i])
		m.sentByKind[i].bytes = m.frameBytesSent.WithLabelValues(kindLabels[i])
		// Loss counters exist at zero from the start, so rates and alerts
		// on them work before the first loss.
		m.outboundDropped.WithLabelValues(kindLabels[i])
		m.undeliverable.WithLabelValues(kindLabels[i])
		m.rejected.WithLabelValues(kindLabels[i], pubsub.RejectValidationQueueFull)
		m.rejected.WithLabelValues(kindLabels[i], pubsub.RejectValidationThrottled)
	}
	m.connectedPeers.WithLabelValues("committee")
	m.connectedPeers.WithLabelValues("other")
	set, err := promreg.Register("p2p", reg,
		m.validations, m.validationSeconds, m.validatorPanics, m.published, m.publishErrors, m.delivered,
		m.handlerPanics, m.objects, m.frameSize, m.certFrames, m.rpcDropped, m.rpcLost, m.linkRepairs, m.outboundDropped, m.rejected, m.duplicates, m.undeliverable, m.outsiderDropped,
		m.framesSent, m.frameBytesSent, m.controlBytesSent, m.throttledPeers, m.publishWaits, m.publishWaitSecs, m.stalledPeers, m.dials, m.connectedPeers, m.committeeScore, m.worstOtherScore,
	)
	if err != nil {
		return nil, err
	}
	m.registered = set
	return m, nil
}

// unregister removes the collectors, so a failed New can be retried with
// the same registry.
func (m *metrics) unregister() { m.registered.Unregister() }

func (m *metrics) validation(k TopicKind, v Verdict, stage string, seconds float64) {
	i := kindIndex(k)
	m.validations.WithLabelValues(kindLabels[i], v.String(), stage).Inc()
	m.validationSeconds.WithLabelValues(kindLabels[i], v.String()).Observe(seconds)
	switch v {
	case Accept:
		m.stats[i].accepted.Add(1)
	case Ignore:
		m.stats[i].ignored.Add(1)
	default:
		m.stats[i].rejected.Add(1)
	}
}

// publish records a frame of n objects published (or not, err).
func (m *metrics) publish(k TopicKind, err error, n int) {
	i := kindIndex(k)
	if err != nil {
		m.publishErrors.WithLabelValues(kindLabels[i]).Inc()
		m.stats[i].publishErrors.Add(1)
		return
	}
	m.published.WithLabelValues(kindLabels[i]).Inc()
	m.stats[i].published.Add(1)
	m.stats[i].objectsPublished.Add(uint64(n))
	m.objects.WithLabelValues(kindLabels[i], "published").Add(float64(n))
	m.frameSize.WithLabelValues(kindLabels[i], "sent").Observe(float64(n))
}

// publishQueueFull records n objects refused by a full publish queue.
func (m *metrics) publishQueueFull(k TopicKind, n int) {
	i := kindIndex(k)
	m.publishErrors.WithLabelValues(kindLabels[i]).Add(float64(n))
	m.stats[i].publishErrors.Add(uint64(n))
	m.objects.WithLabelValues(kindLabels[i], "queue_full").Add(float64(n))
}

// publishSkipped records an object left out of a frame being built.
func (m *metrics) publishSkipped(k TopicKind) {
	m.objects.WithLabelValues(kindLabels[kindIndex(k)], "skipped").Inc()
}

// frameObjects records an accepted frame from a peer: the objects it
// carried and how many were new.
func (m *metrics) frameObjects(k TopicKind, received, fresh int) {
	i := kindIndex(k)
	m.stats[i].objectsReceived.Add(uint64(received))
	m.stats[i].objectsNew.Add(uint64(fresh))
	m.objects.WithLabelValues(kindLabels[i], "received").Add(float64(received))
	m.objects.WithLabelValues(kindLabels[i], "new").Add(float64(fresh))
	m.frameSize.WithLabelValues(kindLabels[i], "received").Observe(float64(received))
}

// deliver records n objects handed to handlers.
func (m *metrics) deliver(k TopicKind, n int) {
	i := kindIndex(k)
	m.delivered.WithLabelValues(kindLabels[i]).Add(float64(n))
	m.stats[i].delivered.Add(uint64(n))
}

// certFrame records a certificate stream frame: sent with result ok,
// fallback or queue_full; received with a verdict or refused.
func (m *metrics) certFrame(direction, result string) {
	m.certFrames.WithLabelValues(direction, result).Inc()
	var c *atomic.Uint64
	switch result {
	case "ok":
		c = &m.cert.sent
	case "fallback":
		c = &m.cert.fallback
	case "accept":
		c = &m.cert.accepted
	case "ignore":
		c = &m.cert.ignored
	case "reject":
		c = &m.cert.rejected
	case "refused":
		c = &m.cert.refused
	default:
		return
	}
	c.Add(1)
}

func (m *metrics) dialAttempt(ok bool) {
	if ok {
		m.dials.WithLabelValues("ok").Inc()
	} else {
		m.dials.WithLabelValues("error").Inc()
	}
}
