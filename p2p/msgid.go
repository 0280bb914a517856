package p2p

import (
	"crypto/sha256"

	pb "github.com/libp2p/go-libp2p-pubsub/pb"

	"github.com/allegro-mesh/allegro/qc"
)

// Message ids are content-derived (StrictNoSign leaves no author or
// sequence number to build them from) and laid out as
//
//	topic prefix ‖ 32-byte digest
//
// The prefix binds the id to its topic, so the same bytes on two topics
// (a QC on the bulletin and on its shard) are two messages, and a copy sent
// to the wrong shard cannot shadow the right one. The prefix is 't' for the
// tx topic, 'b' for the bulletin and 'q' plus the shard byte for QC topics;
// a Mesh serves one chain and epoch, so those need no place in the id.
//
// Digests (SPEC §5), each domain-separated by a distinct leading tag:
//   - tx: tx_hash itself (its preimage starts with "tempo.fastpay.tx.v1");
//   - certificate: SHA256("allegro/cert" ‖ tx_hash ‖ signer ‖ effects_hash ‖
//     signature). SPEC names only tx_hash and signer; effects_hash and the
//     signature are bound too because pubsub marks an id seen before
//     validating it: with the shorter id a single Byzantine validator could
//     race forged certificates "by" every other signer and make its
//     neighbours drop the genuine ones as duplicates, stalling QC assembly,
//     and a signer's two conflicting certificates (equivocation evidence)
//     could not both spread. ed25519 signatures are deterministic, so an
//     honest certificate still has exactly one id;
//   - QC: SHA256("qc" ‖ tx_hash), so QCs for one transaction made of
//     different certificate subsets deduplicate. The price is that a forged
//     QC seen first shadows the genuine one at that node for SeenMessagesTTL;
//     validators still assemble their own QCs from certificates, and the
//     forger is penalised by scoring;
//   - anything that does not decode: SHA256("invalid" ‖ data). Such a
//     message is rejected, and an id from its bytes keeps garbage from
//     shadowing a valid message.
const (
	idPrefixTx       = 't'
	idPrefixBulletin = 'b'
	idPrefixQC       = 'q'
	idPrefixUnknown  = '?'
)

// Domain tags of the digests.
const (
	certIDTag    = "allegro/cert"
	qcIDTag      = "qc"
	invalidIDTag = "invalid"
)

// TxMessageID returns the message id of a tx-topic message: 't' ‖ tx_hash.
func TxMessageID(txHash qc.Hash) string {
	return string(append([]byte{idPrefixTx}, txHash[:]...))
}

// CertMessageID returns the message id of a certificate on the bulletin.
func CertMessageID(c *qc.Certificate) string {
	h := sha256.New()
	h.Write([]byte(certIDTag))
	h.Write(c.TxHash[:])
	h.Write(c.Signer[:])
	h.Write(c.EffectsHash[:])
	h.Write(c.Signature[:])
	return string(h.Sum([]byte{idPrefixBulletin}))
}

// BulletinQCMessageID returns the message id of a QC on the bulletin.
func BulletinQCMessageID(txHash qc.Hash) string {
	return string(qcDigest([]byte{idPrefixBulletin}, txHash))
}

// ShardQCMessageID returns the message id of a QC on QC topic shard.
func ShardQCMessageID(shard int, txHash qc.Hash) string {
	return string(qcDigest([]byte{idPrefixQC, byte(shard)}, txHash))
}

func qcDigest(prefix []byte, txHash qc.Hash) []byte {
	h := sha256.New()
	h.Write([]byte(qcIDTag))
	h.Write(txHash[:])
	return h.Sum(prefix)
}

func invalidID(prefix []byte, topic string, data []byte) string {
	h := sha256.New()
	h.Write([]byte(invalidIDTag))
	if prefix[0] == idPrefixUnknown {
		// Unknown topics share one prefix, so bind the topic name itself.
		h.Write([]byte(topic))
	}
	h.Write(data)
	return string(h.Sum(prefix))
}

// messageID is the pubsub message id function of a Mesh. It runs on the
// pubsub event loop for every arriving copy of a message, so it only
// decodes (no signature checks) and uses the same stage-1 decoders as the
// validators: an id always names what the validator will see.
func (s *topicSet) messageID(m *pb.Message) string {
	topic := m.GetTopic()
	data := m.GetData()
	t, ok := s.lookup(topic)
	if !ok {
		return invalidID([]byte{idPrefixUnknown}, topic, data)
	}
	switch t.Kind {
	case KindTx:
		tx, err := decodeTxMessage(data)
		if err != nil {
			return invalidID([]byte{idPrefixTx}, topic, data)
		}
		s.decoded.put(m, tx)
		return TxMessageID(tx.TxHash)
	case KindBulletin:
		it, err := decodeBulletinItem(data)
		if err != nil {
			return invalidID([]byte{idPrefixBulletin}, topic, data)
		}
		s.decoded.put(m, it)
		switch {
		case it.Cert != nil:
			return CertMessageID(it.Cert)
		default:
			return BulletinQCMessageID(it.QC.TxHash)
		}
	default: // KindQC
		q, err := decodeQCMessage(data)
		if err != nil {
			return invalidID([]byte{idPrefixQC, byte(t.Shard)}, topic, data)
		}
		s.decoded.put(m, q)
		return ShardQCMessageID(t.Shard, q.TxHash)
	}
}
