package safety

import (
	"fmt"
	"sort"

	"github.com/allegro-mesh/allegro/qc"
)

// SPEC §7.1: no two valid QCs for one contention key certify different
// transactions or effects (with at most f Byzantine validators). QCs of one
// transaction that differ only in their certificate subsets count once.
// Payments the driver declared mutually exclusive but that use different
// keys are judged with the payments (see payments).

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
	for _, k := range keys {
		vs := byKey[k]
		var txs, seen []string
		for _, v := range vs {
			txs = append(txs, v.qc.TxHash.Hex()+"/effects "+v.qc.EffectsHash.Hex())
			for _, s := range v.seenBy {
				seen = addName(seen, s)
			}
		}
		sort.Strings(txs)
		c.violate(Violation{Kind: KindConflictingQC,
			Message:  fmt.Sprintf("%d valid QCs for contention key %s certify different transactions", len(vs), k),
			TxHashes: txs, Key: k.String(), Sources: seen})
	}
}
