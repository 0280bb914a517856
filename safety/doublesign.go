package safety

import (
	"bytes"
	"fmt"
	"sort"
)

// SPEC §7.2: no honest validator signs two different transactions (or
// effects) for one contention key, across crashes and restarts, and across
// epochs (SPEC §4: one transaction per key, ever; members in two
// committees keep their guards). A validator is a seat: a committee file's
// member key, or a consensus key with every sidecar key bound to it.
// Signatures are gathered from lone certificates, evidence and the
// certificates inside QCs. A Byzantine validator's double-sign breaks
// nothing: it is listed as a finding, with the honest sidecars that
// reported evidence of it.

func (c *checker) doubleSigns() {
	keys := make([]signerKey, 0, len(c.signed))
	for k, m := range c.signed {
		if len(m) > 1 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return lessSignerKey(keys[i], keys[j]) })
	for _, k := range keys {
		m := c.signed[k]
		var txs []string
		var seen []string
		var inEpochs []uint64
		multi := len(c.committees.List()) > 1
		for te, e := range m {
			tx := te.tx.Hex() + "/effects " + te.effects.Hex()
			if multi {
				tx += " (epoch " + epochList(e.epochs) + ")"
			}
			txs = append(txs, tx)
			for _, s := range e.seenBy {
				seen = addName(seen, s)
			}
			for _, ep := range e.epochs {
				inEpochs = addEpoch(inEpochs, ep)
			}
		}
		sort.Strings(txs)
		name := c.seatName(k.signer)
		if c.honestSeat(k.signer) {
			v := Violation{Kind: KindHonestDoubleSign,
				Message:  fmt.Sprintf("honest validator %s signed %d different transactions for contention key %s", name, len(m), k.key),
				TxHashes: txs, Validators: []string{name}, Key: k.key.String(), Sources: seen}
			if multi {
				v.Epochs = inEpochs
				if len(inEpochs) > 1 {
					v.Message += " across epochs " + epochList(inEpochs)
				}
			}
			c.violate(v)
			continue
		}
		f := ByzantineFinding{Validator: name, Key: k.key.String(), Signed: txs, DetectedBy: c.detected[k]}
		c.r.Byzantine = append(c.r.Byzantine, f)
	}
	undetected := 0
	for _, f := range c.r.Byzantine {
		if len(f.DetectedBy) == 0 {
			undetected++
		}
	}
	if undetected > 0 {
		c.note("%d of %d Byzantine double-signs were not reported as evidence by any honest sidecar (informational: evidence windows are bounded, and a restarted board starts empty)", undetected, len(c.r.Byzantine))
	}
}

func lessSignerKey(a, b signerKey) bool {
	if x := bytes.Compare(a.signer[:], b.signer[:]); x != 0 {
		return x < 0
	}
	if x := bytes.Compare(a.key.Sender[:], b.key.Sender[:]); x != 0 {
		return x < 0
	}
	if x := bytes.Compare(a.key.NonceKey[:], b.key.NonceKey[:]); x != 0 {
		return x < 0
	}
	return a.key.NonceSeq < b.key.NonceSeq
}
