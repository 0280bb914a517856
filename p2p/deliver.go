package p2p

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/allegro-mesh/allegro/qc"
)

// Delivery is one validated object of a frame, handed to a handler.
type Delivery[T any] struct {
	// Value is the decoded, verified object. It is shared with pubsub (it
	// is the message's ValidatorData) and, for local publishes, with the
	// publisher: treat it as read-only.
	Value T
	// From is the peer that forwarded the message (not necessarily its
	// author); this node's ID for its own publishes.
	From peer.ID
	// Local reports that this node published the message.
	Local bool
	// Topic is the topic name, or the certificate stream's protocol for a
	// certificate that came over it (CertProtocol); ID the pubsub message
	// id of the frame that carried the object (shared by the frame's
	// objects; empty on the certificate stream).
	Topic string
	ID    string
	// Publisher is the validator the frame names as its publisher. Frames
	// are unsigned: it is informational, never proof of anything.
	Publisher qc.ValidatorID
}

// Handlers receive validated objects, one call per object new to this node
// (a frame's objects accepted before are not delivered again). Each
// subscribed topic has its own delivery goroutine, so handlers of different
// topics (and of different QC shards) run concurrently; calls for one topic
// are sequential. A handler slower than the network makes its subscription
// buffer (SubscriptionBufferSize frames) overflow: frames are then dropped
// and counted. A panicking handler is recovered, counted and logged.
type (
	TxHandler       func(ctx context.Context, d Delivery[*TxMessage])
	BulletinHandler func(ctx context.Context, d Delivery[*BulletinItem])
	QCHandler       func(ctx context.Context, d Delivery[*qc.QC])
)

// OnTx sets the handler of validated tx-topic messages.
func (m *Mesh) OnTx(fn TxHandler) { storeFunc(&m.onTx, fn, fn == nil) }

// OnBulletin sets the handler of validated bulletin items.
func (m *Mesh) OnBulletin(fn BulletinHandler) { storeFunc(&m.onBulletin, fn, fn == nil) }

// TxRepeatHandler learns that a member published a tx frame carrying
// transactions this node accepted before (so they are not delivered
// again): another member announced them too, as when a client submits a
// payment to two sidecars. publisher is the frame's claim, unsigned like
// the first frame's. It is called during validation, so it must not block.
type TxRepeatHandler func(publisher qc.ValidatorID, txs []qc.Hash)

// OnTxRepeat sets the handler of transactions announced again by another
// member's tx frame.
func (m *Mesh) OnTxRepeat(fn TxRepeatHandler) { storeFunc(&m.pipes.txRepeatFn, fn, fn == nil) }

// OnQC sets the handler of validated QCs from the QC shards. A validator
// also receives every QC on the bulletin; it may leave this unset.
func (m *Mesh) OnQC(fn QCHandler) { storeFunc(&m.onQC, fn, fn == nil) }

// deliverLoop hands one subscription's messages to its handler until Stop.
func (m *Mesh) deliverLoop(info TopicInfo, sub *pubsub.Subscription) {
	defer m.wg.Done()
	for {
		msg, err := sub.Next(m.ctx)
		if err != nil {
			return // Stop cancelled the context or the subscription
		}
		m.deliver(info, msg)
	}
}

// deliver hands each object of an accepted frame to the topic's handler,
// in frame order.
func (m *Mesh) deliver(info TopicInfo, msg *pubsub.Message) {
	objs, ok := msg.ValidatorData.(*frameObjects)
	if !ok {
		return
	}
	// pubsub's message cache keeps msg for its gossip history (seconds),
	// which needs only the frame's bytes: the decoded objects, several
	// times their size, need not outlive their delivery.
	defer func() { msg.ValidatorData = nil }()
	m.metrics.deliver(info.Kind, objs.len())
	local := msg.ReceivedFrom == m.self
	switch info.Kind {
	case KindTx:
		if fn := m.onTx.Load(); fn != nil {
			for _, v := range objs.txs {
				m.call(info, msg.GetTopic(), func() {
					(*fn)(m.ctx, Delivery[*TxMessage]{Value: v, From: msg.ReceivedFrom, Local: local, Topic: msg.GetTopic(), ID: msg.ID, Publisher: objs.header.Publisher})
				})
			}
		}
	case KindBulletin:
		if fn := m.onBulletin.Load(); fn != nil {
			for _, v := range objs.items {
				m.call(info, msg.GetTopic(), func() {
					(*fn)(m.ctx, Delivery[*BulletinItem]{Value: v, From: msg.ReceivedFrom, Local: local, Topic: msg.GetTopic(), ID: msg.ID, Publisher: objs.header.Publisher})
				})
			}
		}
	case KindQC:
		if fn := m.onQC.Load(); fn != nil {
			for _, v := range objs.qcs {
				m.call(info, msg.GetTopic(), func() {
					(*fn)(m.ctx, Delivery[*qc.QC]{Value: v, From: msg.ReceivedFrom, Local: local, Topic: msg.GetTopic(), ID: msg.ID, Publisher: objs.header.Publisher})
				})
			}
		}
	}
}

// call runs one handler call, recovering (counting and logging) a panic so
// the frame's other objects are still delivered.
func (m *Mesh) call(info TopicInfo, topic string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			m.metrics.handlerPanics.WithLabelValues(info.Kind.String()).Inc()
			if ok, suppressed := m.panicLogs.allow(time.Now()); ok {
				m.logger.Error("p2p: delivery handler panicked", "topic", topic, "panic", fmt.Sprint(r), "suppressed", suppressed, "stack", string(debug.Stack()))
			}
		}
	}()
	fn()
}
