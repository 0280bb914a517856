package safety

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/allegro-mesh/allegro/qc"
)

// SPEC §7.5, first half: a partition that leaves no side with a quorum
// certifies nothing.
//
// The check is judged by the certificates inside each QC, not by when a
// source noticed the QC: a busy machine assembles and records QCs late, so
// a QC first seen inside the phase may hold only certificates signed before
// it began. While the partition holds, a QC can come together only on one
// side, out of what that side can hold: certificates created before the
// phase (they may have crossed before the cut) and certificates created
// during it on that side, which stay short of a quorum by themselves. So a
// valid QC breaks §7.5 in a phase marked NoQuorum when both hold:
//
//  1. its certificates created during the phase do not all come from one
//     recorded side (Phase.Sides); without recorded sides no certificate
//     created during the phase is explained;
//  2. a source held it before the phase ended.
//
// Condition 2 keeps the other half of §7.5: a payment submitted during the
// partition is signed on both sides (the driver retries the same request
// on every sidecar), and once the halves reconnect those certificates form
// a QC. That QC is certified by the healed network, not by the partition.
//
// Times, with t = CheckOptions.ClockTolerance:
//   - an honest signer's certificate is created before the phase when its
//     created_unix_millis is at or before Start + t, during it up to
//     End + t, and after it beyond that (it then needs no side to explain
//     it);
//   - a Byzantine signer's timestamp is its own word and may be backdated:
//     its certificate counts as created before the phase only when its
//     timestamp says so and the transaction provably existed by Start + t
//     (a certificate of an honest signer, a status from an honest sidecar,
//     or the driver's submission); otherwise it counts as created during
//     the phase on the Byzantine signer's side;
//   - a QC is held during the phase when a source reported holding it
//     (qc_unix_millis of a status naming its qc_hash) before End - t. When
//     no status names the QC, the earliest time any QC of its transaction
//     was held (statuses, the driver's QCAt) stands for it. Every source's
//     report counts, a Byzantine sidecar's too: an early report can only
//     make the check stricter.

// noQuorumPhases checks every phase marked NoQuorum.
func (c *checker) noQuorumPhases() {
	var ev *txEvidence
	for i := range c.run.Phases {
		ph := &c.run.Phases[i]
		if !ph.NoQuorum {
			continue
		}
		if ev == nil {
			ev = c.txEvidence()
		}
		c.noQuorumPhase(ph, c.phaseSides(ph), ev)
	}
}

// sighting is the earliest time a source held something, and which source
// (a sidecar's name, or "driver" for the driver's client).
type sighting struct {
	at      time.Time
	by      string
	payment string // the driver's payment, when by is "driver"
}

func (s *sighting) offer(at time.Time, by, payment string) {
	if !at.IsZero() && (s.at.IsZero() || at.Before(s.at)) {
		s.at, s.by, s.payment = at, by, payment
	}
}

func (s *sighting) String() string {
	if s.payment != "" {
		return s.by + "'s client (payment " + s.payment + ")"
	}
	return s.by
}

// txEvidence is what the history and the run say about when transactions
// and QCs existed.
type txEvidence struct {
	// existed is the earliest trusted time each transaction is known to
	// have existed: an honest signer's certificate, an honest sidecar's
	// status, the driver's submission or QC.
	existed map[qc.Hash]time.Time
	// heldQC is the earliest report of a node holding each QC (by qc_hash);
	// heldTx the earliest report of any QC of each transaction.
	heldQC, heldTx map[qc.Hash]*sighting
	payments       map[qc.Hash][]*Payment
}

func (c *checker) txEvidence() *txEvidence {
	ev := &txEvidence{existed: make(map[qc.Hash]time.Time), heldQC: make(map[qc.Hash]*sighting),
		heldTx: make(map[qc.Hash]*sighting), payments: make(map[qc.Hash][]*Payment)}
	existed := func(tx qc.Hash, at time.Time) {
		if t, ok := ev.existed[tx]; !at.IsZero() && (!ok || at.Before(t)) {
			ev.existed[tx] = at
		}
	}
	held := func(m map[qc.Hash]*sighting, h qc.Hash, at time.Time, by, payment string) {
		s := m[h]
		if s == nil {
			s = &sighting{}
			m[h] = s
		}
		s.offer(at, by, payment)
	}
	for k, m := range c.signed {
		if !c.honestSeat(k.signer) {
			continue
		}
		for te, e := range m {
			existed(te.tx, unixMillis(e.cert.CreatedUnixMillis))
		}
	}
	for i := range c.h.Txs {
		t := &c.h.Txs[i]
		for _, st := range t.Statuses {
			if c.honestSource[st.Node] {
				existed(t.TxHash, unixMillis(st.FirstSeenUnixMillis))
				existed(t.TxHash, unixMillis(st.QCUnixMillis))
			}
			if st.QCUnixMillis == 0 {
				continue
			}
			at := unixMillis(st.QCUnixMillis)
			held(ev.heldTx, t.TxHash, at, st.Node, "")
			if !st.QCHash.IsZero() {
				held(ev.heldQC, st.QCHash, at, st.Node, "")
			}
		}
	}
	for i := range c.run.Payments {
		p := &c.run.Payments[i]
		if p.TxHash.IsZero() {
			continue
		}
		ev.payments[p.TxHash] = append(ev.payments[p.TxHash], p)
		existed(p.TxHash, p.Sent)
		existed(p.TxHash, p.QCAt)
		held(ev.heldTx, p.TxHash, p.QCAt, "driver", p.Name)
	}
	return ev
}

func unixMillis(ms uint64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms))
}

// phaseSides returns the recorded sides of ph as sets of names, or nil
// when none are recorded or they do not make sense (reported as a bad
// history; the phase is then judged as if no sides were recorded, which
// explains nothing created during it).
func (c *checker) phaseSides(ph *Phase) []map[string]bool {
	if len(ph.Sides) == 0 {
		return nil
	}
	members := make(map[string]bool, len(c.h.Committee.Members))
	for _, info := range c.h.CommitteeInfos() {
		for _, m := range info.Members {
			members[m.Name] = true
		}
	}
	bad := func(format string, args ...any) []map[string]bool {
		c.violate(Violation{Kind: KindBadHistory, Message: fmt.Sprintf("phase %q: ", ph.Name) + fmt.Sprintf(format, args...) +
			"; its QCs are judged as if no sides were recorded"})
		return nil
	}
	on := make(map[string]int)
	sides := make([]map[string]bool, len(ph.Sides))
	for i, side := range ph.Sides {
		sides[i] = make(map[string]bool, len(side))
		for _, n := range side {
			if !members[n] {
				return bad("side %d names %q, not a committee member", i+1, n)
			}
			if j, ok := on[n]; ok {
				return bad("validator %s is on sides %d and %d", n, j+1, i+1)
			}
			on[n] = i
			sides[i][n] = true
		}
		// A side that could gather a quorum of some epoch's committee by
		// itself contradicts NoQuorum, and would explain a QC formed
		// entirely inside the phase.
		for _, com := range c.committees.List() {
			if n, q := sideSeats(com, sides[i]), com.Quorum(); n >= q {
				return bad("side %d (%s) has %d seats of epoch %d, a quorum (%d), in a phase without a quorum", i+1, strings.Join(side, "+"), n, com.Domain().Epoch, q)
			}
		}
	}
	return sides
}

// sideSeats counts the seats of com whose members are named on side.
func sideSeats(com *qc.Committee, side map[string]bool) int {
	seats := make(map[qc.ValidatorID]bool)
	for _, m := range com.Members() {
		if side[m.Name] {
			seats[m.SeatOrID()] = true
		}
	}
	return len(seats)
}

// noQuorumPhase judges every distinct valid QC against one no-quorum phase.
func (c *checker) noQuorumPhase(ph *Phase, sides []map[string]bool, ev *txEvidence) {
	tol := c.opts.ClockTolerance
	before, after := ph.Start.Add(tol), ph.End.Add(tol)
	heldBy := ph.End.Add(-tol)
	var oneSide, healed, unknown int
	for _, q := range c.distinct {
		var during []qc.Certificate
		for _, cert := range q.Certs {
			created := unixMillis(cert.CreatedUnixMillis)
			if c.honest(cert.Signer) {
				if created.After(before) && !created.After(after) {
					during = append(during, cert)
				}
				continue
			}
			// A Byzantine timestamp proves nothing by itself.
			if existed, ok := ev.existed[q.TxHash]; created.After(before) || !ok || existed.After(before) {
				during = append(during, cert)
			}
		}
		if len(during) == 0 {
			continue
		}
		slices.SortFunc(during, func(a, b qc.Certificate) int { return strings.Compare(c.name(a.Signer), c.name(b.Signer)) })
		if side := c.sideOf(during, sides); side >= 0 {
			oneSide++
			continue
		}
		held := ev.heldQC[q.Hash]
		if held == nil {
			held = ev.heldTx[q.TxHash]
		}
		if held == nil || held.at.IsZero() {
			unknown++
			continue
		}
		if !held.at.Before(heldBy) {
			healed++
			continue
		}
		c.violate(Violation{Kind: KindQCWithoutQuorum, Message: c.leakMessage(q, ph, sides, during, held, ev),
			TxHashes: []string{q.TxHash.Hex()}, Validators: c.certNames(during), Sources: []string{held.by}})
	}
	if oneSide > 0 || healed > 0 {
		c.note("no-quorum phase %q: %d QC(s) hold certificates created during it by one side only (with earlier ones: allowed); %d hold certificates created during it that no one side explains but were first held after it ended (completed after healing: allowed)",
			ph.Name, oneSide, healed)
	}
	if unknown > 0 {
		c.note("no-quorum phase %q: %d QC(s) hold certificates created during it that no one side explains, but no source reported when the QC was held: not judged",
			ph.Name, unknown)
	}
}

// sideOf returns the index of the side holding every signer of certs, or
// -1.
func (c *checker) sideOf(certs []qc.Certificate, sides []map[string]bool) int {
	for i, side := range sides {
		all := true
		for _, cert := range certs {
			if !side[c.name(cert.Signer)] {
				all = false
				break
			}
		}
		if all {
			return i
		}
	}
	return -1
}

func (c *checker) certNames(certs []qc.Certificate) []string {
	out := make([]string, len(certs))
	for i, cert := range certs {
		out[i] = c.name(cert.Signer)
	}
	return out
}

func (c *checker) leakMessage(q *qc.QC, ph *Phase, sides []map[string]bool, during []qc.Certificate, held *sighting, ev *txEvidence) string {
	var b strings.Builder
	fmt.Fprintf(&b, "QC %s of tx %s%s: ", q.Hash, q.TxHash, paymentNames(ev.payments[q.TxHash]))
	signed := make([]string, len(during))
	for i, cert := range during {
		s := fmt.Sprintf("%s at %+.3fs", c.name(cert.Signer), unixMillis(cert.CreatedUnixMillis).Sub(ph.Start).Seconds())
		if !c.honest(cert.Signer) {
			s += " (Byzantine, its timestamp not trusted: counted as during the phase)"
		}
		signed[i] = s
	}
	fmt.Fprintf(&b, "certificates created during no-quorum phase %q (%s to %s) by %s", ph.Name,
		ph.Start.UTC().Format(time.RFC3339Nano), ph.End.UTC().Format(time.RFC3339Nano), strings.Join(signed, ", "))
	if len(sides) == 0 {
		b.WriteString(" (no sides recorded for the phase, so none is explained by a side)")
	} else {
		b.WriteString(" are not all on one of its sides " + sidesText(ph.Sides))
	}
	fmt.Fprintf(&b, ", yet %s held the QC at %s (%+.3fs), before the phase ended: the partition leaked",
		held, held.at.UTC().Format(time.RFC3339Nano), held.at.Sub(ph.Start).Seconds())
	return b.String()
}

// sidesText renders sides as "v0+v1 | v2+v3".
func sidesText(sides [][]string) string {
	parts := make([]string, len(sides))
	for i, s := range sides {
		parts[i] = strings.Join(slices.Sorted(slices.Values(s)), "+")
	}
	return strings.Join(parts, " | ")
}
