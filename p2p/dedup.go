package p2p

import (
	"crypto/sha256"

	"github.com/allegro-mesh/allegro/internal/recent"
	"github.com/allegro-mesh/allegro/qc"
)

// acceptedObjects deduplicates objects, not messages. Message ids hash the
// whole frame (msgid.go), so one object travels in many frames: a
// transaction two validators both accepted, QCs of one transaction
// assembled by different validators from different signer subsets, a
// certificate republished. Objects a node already accepted are not
// delivered again, and a frame holding nothing else is ignored before any
// of its signatures is verified, without penalty.
//
// Only accepted objects are recorded, so an object that fails validation
// can never suppress a valid one. The sets are bounded, by insertion
// rather than use (recent.Set: a few times smaller than an LRU, and every
// validator records n certificates per payment): duplicates arrive within
// a hop or two of the first copy, and one that arrives after its entry
// aged out is verified and delivered again, which every handler tolerates.
//
//   - transactions: by tx_hash (the hash covers the whole signed
//     transaction and its parent QC hash; a copy carrying other parent QC
//     bytes adds nothing once one copy's parents verified);
//   - certificates: by (signer, tx_hash, effects_hash), so a signer's two
//     conflicting certificates (equivocation evidence) are two objects;
//   - QCs on the bulletin and QCs on the shards: by tx_hash, in one set per
//     topic kind, since the same QC travels on both and each must reach that
//     topic's subscribers.
type acceptedObjects struct {
	txs      *recent.Set[qc.Hash]
	certs    *recent.Set[certObject]
	bullQCs  *recent.Set[qc.Hash]
	shardQCs *recent.Set[qc.Hash]
}

// certObject identifies a certificate by a SHA-256 of (signer, tx_hash,
// effects_hash): 32 bytes per entry rather than 96, since every validator
// records every certificate of every recent payment, n per payment.
type certObject [sha256.Size]byte

// certObjectTag separates certObject digests from every other hash.
const certObjectTag = "allegro/accepted-certificate/1"

func newAcceptedObjects(size int) (*acceptedObjects, error) {
	a := &acceptedObjects{}
	var err error
	if a.txs, err = recent.NewSet[qc.Hash](size); err != nil {
		return nil, err
	}
	if a.certs, err = recent.NewSet[certObject](size); err != nil {
		return nil, err
	}
	if a.bullQCs, err = recent.NewSet[qc.Hash](size); err != nil {
		return nil, err
	}
	if a.shardQCs, err = recent.NewSet[qc.Hash](size); err != nil {
		return nil, err
	}
	return a, nil
}

func certObjectOf(c *qc.Certificate) certObject {
	var b [len(certObjectTag) + len(qc.ValidatorID{}) + 2*len(qc.Hash{})]byte
	n := copy(b[:], certObjectTag)
	n += copy(b[n:], c.Signer[:])
	n += copy(b[n:], c.TxHash[:])
	copy(b[n:], c.EffectsHash[:])
	return sha256.Sum256(b[:])
}

func (a *acceptedObjects) txSeen(h qc.Hash) bool { return a.txs.Contains(h) }

func (a *acceptedObjects) certSeen(c *qc.Certificate) bool { return a.certs.Contains(certObjectOf(c)) }

// qcSeen reports whether a QC of transaction h was accepted on a topic of
// kind k (the bulletin, or any QC shard).
func (a *acceptedObjects) qcSeen(k TopicKind, h qc.Hash) bool {
	if k == KindQC {
		return a.shardQCs.Contains(h)
	}
	return a.bullQCs.Contains(h)
}

// record remembers the objects of a frame accepted on a topic of kind k.
func (a *acceptedObjects) record(k TopicKind, o *frameObjects) {
	for _, tx := range o.txs {
		a.txs.Add(tx.TxHash)
	}
	for _, it := range o.items {
		if it.Cert != nil {
			a.certs.Add(certObjectOf(it.Cert))
		} else if it.QC != nil {
			a.bullQCs.Add(it.QC.TxHash)
		}
	}
	if k == KindQC {
		for _, q := range o.qcs {
			a.shardQCs.Add(q.TxHash)
		}
	}
}
