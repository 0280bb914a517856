package p2p

import (
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"
)

// dropTracer counts where pubsub loses messages (outbound RPCs dropped on
// full peer queues, messages rejected or ignored by pubsub's reason,
// duplicates, messages a slow subscriber could not take, throttled peers)
// and what it sends. Pubsub calls tracers synchronously on its event loop,
// so every method only counts.
type dropTracer struct {
	m      *metrics
	topics *topicSet
	// out, when set, follows per-peer outbound queue depth for publish
	// back-pressure.
	out *outbound
	// onWriterClosed, when set, is told that the writer to a peer ended
	// (pubsub link repair).
	onWriterClosed func(peer.ID)
}

var _ pubsub.RawTracer = (*dropTracer)(nil)

func (t *dropTracer) kind(topic string) int {
	info, ok := t.topics.lookup(topic)
	if !ok {
		return 0
	}
	return kindIndex(info.Kind)
}

// DropRPC counts an outbound RPC dropped because the peer's queue was full,
// and every message it carried.
func (t *dropTracer) DropRPC(rpc *pubsub.RPC, _ peer.ID) {
	t.m.rpcDropped.Inc()
	for _, msg := range rpc.GetPublish() {
		i := t.kind(msg.GetTopic())
		t.m.outboundDropped.WithLabelValues(kindLabels[i]).Inc()
		t.m.stats[i].dropped.Add(1)
	}
}

// RejectMessage counts a message pubsub rejected or ignored. Queue-full and
// throttled rejections are local back-pressure, so they also count as drops.
func (t *dropTracer) RejectMessage(msg *pubsub.Message, reason string) {
	i := t.kind(msg.GetTopic())
	t.m.rejected.WithLabelValues(kindLabels[i], reason).Inc()
	if reason == pubsub.RejectValidationQueueFull || reason == pubsub.RejectValidationThrottled {
		t.m.stats[i].dropped.Add(1)
	}
}

// DuplicateMessage counts a copy of an already seen message.
func (t *dropTracer) DuplicateMessage(msg *pubsub.Message) {
	i := t.kind(msg.GetTopic())
	t.m.duplicatesByKind[i].Inc()
	t.m.stats[i].duplicates.Add(1)
}

// UndeliverableMessage counts a message dropped because a subscription's
// buffer was full.
func (t *dropTracer) UndeliverableMessage(msg *pubsub.Message) {
	i := t.kind(msg.GetTopic())
	t.m.undeliverable.WithLabelValues(kindLabels[i]).Inc()
	t.m.stats[i].dropped.Add(1)
}

// ThrottlePeer counts an RPC whose messages were ignored because the
// router throttled its sender.
func (t *dropTracer) ThrottlePeer(peer.ID) { t.m.throttledPeers.Inc() }

// SendRPC: an RPC entered p's outbound queue. Its frames and control
// messages are counted as sent (bytes per topic kind).
func (t *dropTracer) SendRPC(rpc *pubsub.RPC, p peer.ID) {
	if t.out != nil {
		t.out.add(p, 1)
	}
	for _, msg := range rpc.GetPublish() {
		i, n := t.kind(msg.GetTopic()), len(msg.GetData())
		t.m.sentByKind[i].frames.Inc()
		t.m.sentByKind[i].bytes.Add(float64(n))
		t.m.stats[i].sent.Add(1)
		t.m.stats[i].sentBytes.Add(uint64(n))
	}
	if ctl := rpc.GetControl(); ctl != nil {
		n := proto.Size(ctl)
		t.m.controlBytesSent.Add(float64(n))
		t.m.controlSent.Add(uint64(n))
	}
}

// SendRPCCompleted: an RPC left p's outbound queue for the stream. Called
// from the per-peer writer goroutines.
func (t *dropTracer) SendRPCCompleted(_ *pubsub.RPC, p peer.ID, _ time.Duration) {
	if t.out != nil {
		t.out.add(p, -1)
	}
}

// OnNewOutboundStream and OnClosedOutboundStream: a stream starts with an
// empty queue, and a closed one discards its queue.
func (t *dropTracer) OnNewOutboundStream(p peer.ID, _ protocol.ID) {
	if t.out != nil {
		t.out.reset(p)
	}
}

// A closed stream's queued RPCs are discarded by pubsub without a DropRPC
// event; count them as lost.
func (t *dropTracer) OnClosedOutboundStream(p peer.ID) {
	if t.out != nil {
		if lost := t.out.reset(p); lost > 0 {
			t.m.rpcLost.Add(float64(lost))
		}
	}
	if t.onWriterClosed != nil {
		t.onWriterClosed(p)
	}
}

// The remaining events are not drops.

func (t *dropTracer) Join(string)                     {}
func (t *dropTracer) Leave(string)                    {}
func (t *dropTracer) Graft(peer.ID, string)           {}
func (t *dropTracer) Prune(peer.ID, string)           {}
func (t *dropTracer) ValidateMessage(*pubsub.Message) {}
func (t *dropTracer) DeliverMessage(*pubsub.Message)  {}
func (t *dropTracer) RecvRPC(*pubsub.RPC)             {}
