package p2p

import (
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/allegro-mesh/allegro/qc"
)

// acceptedObjects deduplicates objects, not messages. Message ids hash the
// whole payload (msgid.go), so one logical object can arrive as several
// messages: QCs of one transaction assembled by different validators from
// different signer subsets, or a certificate re-encoded with another
// created_unix_millis. After the first copy is accepted on a topic, later
// ones add nothing: they are ignored before their signatures are verified,
// neither forwarded nor delivered, and nobody is penalised for them.
//
// Only accepted objects are recorded, so a copy that fails validation can
// never suppress a valid one. The sets are bounded: duplicates arrive within
// a hop or two of the first copy, and one that arrives after its entry aged
// out is verified and delivered again, which every handler tolerates.
//
//   - certificates on the bulletin: by (signer, tx_hash, effects_hash), so a
//     signer's two conflicting certificates (equivocation evidence) are two
//     objects;
//   - QCs on the bulletin and QCs on the shards: by tx_hash, in one set per
//     topic kind, since the same QC travels on both and each must reach that
//     topic's subscribers.
type acceptedObjects struct {
	certs    *lru.Cache[certObject, struct{}]
	bullQCs  *lru.Cache[qc.Hash, struct{}]
	shardQCs *lru.Cache[qc.Hash, struct{}]
}

type certObject struct {
	signer  qc.ValidatorID
	tx      qc.Hash
	effects qc.Hash
}

func newAcceptedObjects(size int) (*acceptedObjects, error) {
	a := &acceptedObjects{}
	var err error
	if a.certs, err = lru.New[certObject, struct{}](size); err != nil {
		return nil, err
	}
	if a.bullQCs, err = lru.New[qc.Hash, struct{}](size); err != nil {
		return nil, err
	}
	if a.shardQCs, err = lru.New[qc.Hash, struct{}](size); err != nil {
		return nil, err
	}
	return a, nil
}

func certObjectOf(c *qc.Certificate) certObject {
	return certObject{signer: c.Signer, tx: c.TxHash, effects: c.EffectsHash}
}

// seen reports whether an equal object was already accepted on a topic of
// kind k. Transactions are never deduplicated here: whether a copy of a
// transaction is valid depends on more than its tx_hash (the parent QCs it
// carries), and the validator handles repeats idempotently.
func (a *acceptedObjects) seen(k TopicKind, obj any) bool {
	switch v := obj.(type) {
	case *BulletinItem:
		if v.Cert != nil {
			return a.certs.Contains(certObjectOf(v.Cert))
		}
		return a.bullQCs.Contains(v.QC.TxHash)
	case *qc.QC:
		if k == KindQC {
			return a.shardQCs.Contains(v.TxHash)
		}
	}
	return false
}

// accept records an object accepted on a topic of kind k.
func (a *acceptedObjects) accept(k TopicKind, obj any) {
	switch v := obj.(type) {
	case *BulletinItem:
		if v.Cert != nil {
			a.certs.Add(certObjectOf(v.Cert), struct{}{})
		} else if v.QC != nil {
			a.bullQCs.Add(v.QC.TxHash, struct{}{})
		}
	case *qc.QC:
		if k == KindQC {
			a.shardQCs.Add(v.TxHash, struct{}{})
		}
	}
}
