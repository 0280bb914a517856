package safety

import (
	"fmt"
	"sort"

	"github.com/allegro-mesh/allegro/qc"
)

// SPEC §7.1: no two valid QCs for one contention key certify different
// transactions or effects (with at most f Byzantine validators), of any
// epochs (SPEC §5a): QCs are grouped by contention key over every epoch's
// committee, so a QC of epoch e and one of epoch e+1 for one key conflict
// like two of one epoch. QCs of one transaction that differ only in their
// certificate subsets, or in their epoch, count once. Payments the driver
// declared mutually exclusive but that use different keys are judged with
// the payments (see payments).

func (c *checker) conflictingQCs() {
	byKey := make(map[qc.ContentionKey][]*validQC)
	for _, v := range c.valid {
		k := v.qc.Effects().ContentionKey()
		byKey[k] = append(byKey[k], v)
	}
	c.r.QCs.Certified = len(c.certified)
	c.r.QCs.ContentionKeys = len(byKey)
	keys := make([]qc.ContentionKey, 0)
	for k, vs := range byKey {
		if len(vs) > 1 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	epochs := len(c.committees.List()) > 1
	for _, k := range keys {
		vs := byKey[k]
		var txs, seen []string
		var inEpochs []uint64
		for _, v := range vs {
			tx := v.qc.TxHash.Hex() + "/effects " + v.qc.EffectsHash.Hex()
			if epochs {
				tx += " (epoch " + epochList(v.epochs) + ")"
			}
			txs = append(txs, tx)
			for _, s := range v.seenBy {
				seen = addName(seen, s)
			}
			for _, e := range v.epochs {
				inEpochs = addEpoch(inEpochs, e)
			}
		}
		sort.Strings(txs)
		v := Violation{Kind: KindConflictingQC,
			Message:  fmt.Sprintf("%d valid QCs for contention key %s certify different transactions", len(vs), k),
			TxHashes: txs, Key: k.String(), Sources: seen}
		if epochs {
			v.Epochs = inEpochs
			if len(inEpochs) > 1 {
				v.Message += fmt.Sprintf(" across epochs %s", epochList(inEpochs))
			} else {
				v.Message += fmt.Sprintf(" in epoch %d", inEpochs[0])
			}
		}
		c.violate(v)
	}
}
