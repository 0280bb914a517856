package safety

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// SPEC §7.5, second half (needs the run): after healing, pending payments
// complete. A payment accepted by a sidecar on the quorum side gets a QC or
// is on chain (not_completed), and every certified transaction is on chain
// once the run healed (not_settled). On chain counts as complete because a
// QC can then no longer form: anyone holding the raw transaction (every
// validator it was gossiped to, a Byzantine one included) may send it to the
// chain, and from then on a validator that had not signed it refuses it as
// NONCE_SEQ_TOO_LOW (SPEC §4, step 4), while the payment itself is final.
// The report's payment counts are gathered on the way, and payments the
// driver declared mutually exclusive must not all be certified
// (conflicting_qc).

// Settled stages of the status API.
var settledStages = map[string]bool{
	fastpayv1.TxLifecycleUpdate_INCLUDED.String():  true,
	fastpayv1.TxLifecycleUpdate_FINALIZED.String(): true,
}

// settled reports whether a certified transaction is on chain: an honest
// sidecar reports it INCLUDED or FINALIZED, or (nonce key 0) the chain's
// nonce of its sender has passed its nonce.
func (c *checker) settled(v *validQC) (bool, string) {
	if t := c.txs[v.qc.TxHash]; t != nil {
		for _, st := range t.Statuses {
			if settledStages[st.Stage] && c.honestSource[st.Node] {
				return true, "status"
			}
		}
	}
	e := v.qc.Effects()
	if n, ok := c.h.ChainNonces[e.Sender]; ok && e.NonceKey == (qc.NonceKey{}) && n > e.NonceSeq {
		return true, "chain nonce"
	}
	return false, ""
}

func (c *checker) payments() {
	ps := &PaymentStats{RejectedByCode: make(map[string]int), Errors: make(map[string]int)}
	c.r.Payments = ps
	byTx := make(map[qc.Hash][]*Payment)
	for i := range c.run.Payments {
		p := &c.run.Payments[i]
		if !p.TxHash.IsZero() {
			byTx[p.TxHash] = append(byTx[p.TxHash], p)
		}
	}

	// Every certified transaction must be on chain once the run healed.
	certTxs := make([]qc.Hash, 0, len(c.certified))
	for tx := range c.certified {
		certTxs = append(certTxs, tx)
	}
	sort.Slice(certTxs, func(i, j int) bool { return bytes.Compare(certTxs[i][:], certTxs[j][:]) < 0 })
	for _, tx := range certTxs {
		v := c.certified[tx]
		ok, how := c.settled(v)
		if ok {
			ps.SettledTxs++
			if how == "chain nonce" {
				ps.SettledByNonce++
			}
			continue
		}
		stage := "unknown to every sidecar"
		if t := c.txs[tx]; t != nil {
			stage = highestStage(t.Statuses)
		}
		names := paymentNames(byTx[tx])
		c.violate(Violation{Kind: KindNotSettled,
			Message:  fmt.Sprintf("certified transaction %s%s is not on chain (highest stage %s)", tx, names, stage),
			TxHashes: []string{tx.Hex()}, Account: v.qc.Effects().Sender.Hex()})
	}

	groups := make(map[string][]*Payment)
	for i := range c.run.Payments {
		p := &c.run.Payments[i]
		ps.Sent++
		v, hasQC := c.certified[p.TxHash]
		if p.TxHash.IsZero() {
			hasQC = false
		}
		switch {
		case p.Accepted():
			ps.Accepted++
		case p.RejectCode() != "":
			ps.RejectedByCode[p.RejectCode()]++
		default:
			text, _ := strings.CutPrefix(p.Outcome, OutcomeErrorPrefix)
			if text == "" {
				text = "(no outcome)"
			}
			ps.Errors[truncateText(text, 60)]++
		}
		if !p.QCAt.IsZero() {
			ps.ClientSawQC++
		}
		if p.FeeTight {
			ps.FeeTight++
			if hasQC {
				ps.FeeTightWithQC++
				if ok, _ := c.settled(v); ok {
					ps.FeeTightSettled++
				}
			}
			if code := p.RejectCode(); code != "" {
				if ps.FeeTightRejectedByCode == nil {
					ps.FeeTightRejectedByCode = make(map[string]int)
				}
				ps.FeeTightRejectedByCode[code]++
			}
		}
		if hasQC {
			ps.WithQC++
			if p.QCAt.IsZero() {
				ps.QCAfterClientGaveUp++
			}
			if ok, _ := c.settled(v); ok {
				ps.Settled++
			}
		}
		if !p.ParentTx.IsZero() {
			ps.Chained++
			if hasQC {
				ps.ChainedWithQC++
			}
		}
		if p.Conflicting {
			ps.Conflicting++
			if hasQC {
				ps.ConflictingWithQC++
			}
			g := p.ConflictGroup
			if g == "" {
				if k, ok := c.txKey[p.TxHash]; ok && !p.TxHash.IsZero() {
					g = "key " + k.String()
				}
			} else {
				g = "group " + g
			}
			if g != "" {
				groups[g] = append(groups[g], p)
			}
			continue
		}
		if p.Accepted() && !hasQC {
			if _, onChain := c.h.ChainIncluded[p.ChainTx]; onChain && !p.ChainTx.IsZero() {
				ps.OnChainWithoutQC++
				continue
			}
			if p.QuorumSide {
				c.violate(Violation{Kind: KindNotCompleted,
					Message: fmt.Sprintf("payment %s (tx %s) was accepted by %s on the quorum side during phase %q but never got a QC",
						p.Name, p.TxHash, p.SubmittedTo, p.Phase),
					TxHashes: []string{p.TxHash.Hex()}, Account: p.Sender.Hex(), Validators: []string{p.SubmittedTo}})
			} else {
				ps.StrandedMinority++
			}
		}
	}
	ps.ConflictGroups = len(groups)
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		var withQC []*Payment
		keys := make(map[qc.ContentionKey]bool)
		for _, p := range groups[g] {
			if v, ok := c.certified[p.TxHash]; ok && !p.TxHash.IsZero() {
				withQC = append(withQC, p)
				keys[v.qc.Effects().ContentionKey()] = true
			}
		}
		if len(withQC) > 1 {
			ps.ConflictGroupsDoubleCertified++
		}
		// Same key: already reported as conflicting QCs.
		if len(withQC) > 1 && len(keys) > 1 {
			var txs []string
			for _, p := range withQC {
				txs = append(txs, p.TxHash.Hex())
			}
			c.violate(Violation{Kind: KindConflictingQC,
				Message:  fmt.Sprintf("%d payments of double-spend %s all got QCs: %s", len(withQC), g, paymentNames(withQC)),
				TxHashes: txs, Account: withQC[0].Sender.Hex()})
		}
	}
	if ps.StrandedMinority > 0 {
		c.note("%d payment(s) accepted by a sidecar on a side without a quorum never got a QC (allowed: SPEC §7.5 requires completion only of quorum-side payments)", ps.StrandedMinority)
	}
	if ps.OnChainWithoutQC > 0 {
		c.note("%d payment(s) accepted on the quorum side got no QC because their transaction reached the chain first, sent by a holder of the raw transaction: completed on chain, without the fast path", ps.OnChainWithoutQC)
	}
	if ps.QCAfterClientGaveUp > 0 {
		c.note("%d payment(s) got a QC after the driver stopped waiting for it", ps.QCAfterClientGaveUp)
	}
}

func highestStage(sts []NodeStatus) string {
	best, bestV := "none", int32(-1)
	for _, st := range sts {
		if v, ok := fastpayv1.TxLifecycleUpdate_Stage_value[st.Stage]; ok && v > bestV {
			best, bestV = st.Stage, v
		}
	}
	return best
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
