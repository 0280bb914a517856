package p2p

import (
	"crypto/sha256"
	"encoding/binary"

	pb "github.com/libp2p/go-libp2p-pubsub/pb"
)

// Message ids are content-derived (StrictNoSign leaves no author or
// sequence number to build them from) and laid out as
//
//	topic prefix ‖ SHA256("allegro/gossip/2" ‖ frame)
//
// The digest covers the whole frame. Pubsub marks an id as seen before the
// topic validator runs, so an id derived from part of a message — a frame's
// header, a tx's tx_hash — would let anyone holding that part first (the
// payer, a proxy in front of a sidecar, a Byzantine member) send a copy with
// something invalid attached; validators would reject it and then drop the
// genuine frame as a duplicate. With the whole frame hashed, a rejected copy
// shadows only itself. The same objects in other frames are removed after
// validation, object by object (dedup.go).
//
// The prefix binds the id to its topic, so the same bytes on two topics (a
// QC on the bulletin and on its shard) are two messages: 't' for the tx
// topic, 'b' for the bulletin, 'q' and the shard byte for QC topics, and '?'
// for topics that are not this committee's, whose digest also covers the
// topic name. A Mesh serves one chain and epoch, so those need no place in
// the id.
const (
	idPrefixTx       = 't'
	idPrefixBulletin = 'b'
	idPrefixQC       = 'q'
	idPrefixUnknown  = '?'

	messageIDTag = "allegro/gossip/2"
)

// messageID is the pubsub message id function of a Mesh. It runs on the
// pubsub event loop for every arriving copy of a message: a hash of the
// bytes, nothing decoded.
func (s *topicSet) messageID(m *pb.Message) string {
	return s.idOf(m.GetTopic(), m.GetData())
}

// idOf returns the message id of payload data on topic.
func (s *topicSet) idOf(topic string, data []byte) string {
	h := sha256.New()
	h.Write([]byte(messageIDTag))
	var prefix []byte
	t, ok := s.lookup(topic)
	switch {
	case !ok:
		prefix = []byte{idPrefixUnknown}
		// Unknown topics share one prefix, so the digest binds the name
		// (length-prefixed: name and payload must not run into each other).
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(topic))))
		h.Write([]byte(topic))
	case t.Kind == KindTx:
		prefix = []byte{idPrefixTx}
	case t.Kind == KindBulletin:
		prefix = []byte{idPrefixBulletin}
	default:
		prefix = []byte{idPrefixQC, byte(t.Shard)}
	}
	h.Write(data)
	return string(h.Sum(prefix))
}

// MessageID returns the pubsub message id of payload data on topic, as this
// mesh computes it.
func (m *Mesh) MessageID(topic string, data []byte) string { return m.topics.idOf(topic, data) }
