package safety

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"strings"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/qc"
)

// Violation kinds. Each names the SPEC §7 invariant it breaks.
const (
	// KindConflictingQC: two valid QCs for one contention key with
	// different transactions or effects (§7.1), or valid QCs for payments
	// the driver declared mutually exclusive.
	KindConflictingQC = "conflicting_qc"
	// KindHonestDoubleSign: an honest validator has two valid certificates
	// for one contention key with different transactions or effects (§7.2).
	KindHonestDoubleSign = "honest_double_sign"
	// KindOverdraft: an account's certified debits exceed its initial
	// balance plus its certified credits (§7.3).
	KindOverdraft = "overdraft"
	// KindFeeUncovered: an account's certified debits fit its initial
	// balance plus its certified credits, but not together with the
	// maximum fees of the certified payments it pays fees for: a QC was
	// given to a payment that could not pay for its inclusion (§7.3 with
	// the fee rule of §4).
	KindFeeUncovered = "fee_uncovered"
	// KindInsideMargin: an honest validator's certificate in a QC of a
	// 0x76 transaction was created within the settlement margin of its
	// valid_before, or more than the margin ahead of its valid_after: the
	// QC may not settle in time (§4).
	KindInsideMargin = "certified_inside_margin"
	// KindLightClientInvalidQC: a QC a light client accepted does not
	// decode or verify (§7.4).
	KindLightClientInvalidQC = "light_client_invalid_qc"
	// KindQCWithoutQuorum: a QC first formed during a phase in which no side
	// of the network held a quorum (§7.5).
	KindQCWithoutQuorum = "qc_during_no_quorum"
	// KindNotCompleted: a payment accepted by a sidecar on the quorum side
	// never got a QC (§7.5).
	KindNotCompleted = "not_completed"
	// KindNotSettled: a certified payment is not included on chain after
	// the run healed (§7.5).
	KindNotSettled = "not_settled"
	// KindHonestServedInvalid: an honest sidecar served a certificate, QC
	// or evidence that does not verify; honest boards hold only verified
	// objects, so light clients and parents could be fed forgeries
	// (§7.1, §7.4).
	KindHonestServedInvalid = "honest_served_invalid"
	// KindBadHistory: the history cannot be checked (no valid committee).
	KindBadHistory = "bad_history"
)

// invariantOf maps a violation kind to the SPEC §7 invariant.
var invariantOf = map[string]string{
	KindConflictingQC: "§7.1", KindHonestDoubleSign: "§7.2", KindOverdraft: "§7.3", KindFeeUncovered: "§7.3/§4", KindInsideMargin: "§4",
	KindLightClientInvalidQC: "§7.4", KindQCWithoutQuorum: "§7.5", KindNotCompleted: "§7.5",
	KindNotSettled: "§7.5", KindHonestServedInvalid: "§7.1/§7.4", KindBadHistory: "-",
}

// Settled stages of the status API.
var settledStages = map[string]bool{
	fastpayv1.TxLifecycleUpdate_INCLUDED.String():  true,
	fastpayv1.TxLifecycleUpdate_FINALIZED.String(): true,
}

// DefaultClockTolerance is the default CheckOptions.ClockTolerance.
const DefaultClockTolerance = 250 * time.Millisecond

// CheckOptions tune Check. Use DefaultCheckOptions and change fields: a
// zero value means zero, not the default.
type CheckOptions struct {
	// ClockTolerance is how far apart two clocks' readings of one moment
	// may be when §7.5 is judged in a no-quorum phase: certificates'
	// created_unix_millis and sidecars' qc_unix_millis (validator clocks)
	// against the phase's Start and End (the driver's clock). In the docker
	// suite they all read the one host clock, so it absorbs little more
	// than millisecond truncation; it is not the time a busy machine takes
	// to assemble or report a QC, which the rule does not depend on. An
	// honest certificate created at or before Start + ClockTolerance
	// counts as created before the phase, one created after End +
	// ClockTolerance as after it, and a QC counts as held during the phase
	// only when a source held it before End - ClockTolerance. The same
	// tolerance widens a 0x76 transaction's validity window narrowed by the
	// settlement margin (certificate times against the transaction's unix
	// seconds) on both sides. A larger tolerance flags fewer QCs (default
	// 250 ms).
	ClockTolerance time.Duration
}

// DefaultCheckOptions returns the defaults.
func DefaultCheckOptions() CheckOptions { return CheckOptions{ClockTolerance: DefaultClockTolerance} }

// Validate checks the options, naming the bad field.
func (o CheckOptions) Validate() error {
	if o.ClockTolerance < 0 {
		return fmt.Errorf("safety: CheckOptions.ClockTolerance must not be negative, got %s", o.ClockTolerance)
	}
	return nil
}

// Check verifies h (and run, when not nil) against the safety invariants
// of SPEC §7 with the default options. run may be nil: then only the
// invariants the history alone decides are checked (not completion,
// settlement or quorum-less phases).
func Check(h *History, run *Run) *Report { return CheckWith(h, run, DefaultCheckOptions()) }

// CheckWith is Check with options.
func CheckWith(h *History, run *Run, opts CheckOptions) *Report {
	c := &checker{h: h, run: run, opts: opts, r: &Report{CheckedAt: time.Now().UTC(), ClockTolerance: opts.ClockTolerance}}
	if err := opts.Validate(); err != nil {
		c.violate(Violation{Kind: KindBadHistory, Message: err.Error()})
		return c.finish()
	}
	if h == nil {
		c.violate(Violation{Kind: KindBadHistory, Message: "no history"})
		return c.finish()
	}
	committee, err := h.QCommittee()
	if err != nil {
		c.violate(Violation{Kind: KindBadHistory, Message: err.Error()})
		return c.finish()
	}
	c.committee = committee
	c.r.Committee = CommitteeSummary{ChainID: h.Committee.ChainID, Epoch: h.Committee.Epoch,
		N: committee.N(), F: committee.F(), Quorum: committee.Quorum()}
	for _, m := range h.Committee.Members {
		if !m.Honest {
			c.r.Committee.Byzantine = append(c.r.Committee.Byzantine, m.Name)
		}
	}
	c.txs = make(map[qc.Hash]*TxRecord, len(h.Txs))
	for i := range h.Txs {
		c.txs[h.Txs[i].TxHash] = &h.Txs[i]
	}
	c.sources()
	c.certificates()
	c.evidence()
	c.qcs()
	c.lightClients()
	c.doubleSigns()
	c.conflictingQCs()
	if run != nil {
		c.r.Fees = &FeeStats{SettlementMargin: c.margin()}
	}
	c.balances()
	if run != nil {
		c.validityWindows()
		c.payments()
		c.noQuorumPhases()
		c.phases()
	}
	return c.finish()
}

type checker struct {
	h         *History
	run       *Run
	opts      CheckOptions
	r         *Report
	committee *qc.Committee

	honestSource map[string]bool
	// valid certificates per (signer, contention key) per (tx, effects)
	signed map[signerKey]map[txEffects]*signedEntry
	// contention key of each transaction, from valid certificates
	txKey map[qc.Hash]qc.ContentionKey
	// honest sources that reported verified evidence per (signer, key)
	detected map[signerKey][]string
	// valid QCs per (tx, effects)
	valid map[txEffects]*validQC
	// valid QCs per transaction
	certified map[qc.Hash]*validQC
	// every distinct valid QC (by qc_hash), in the order first met: §7.5
	// judges each, as nodes may assemble different certificate subsets
	distinct   []*qc.QC
	distinctBy map[qc.Hash]bool
	// sidecar statuses per transaction
	txs map[qc.Hash]*TxRecord
}

type signerKey struct {
	signer qc.ValidatorID
	key    qc.ContentionKey
}

type txEffects struct{ tx, effects qc.Hash }

type signedEntry struct {
	cert   qc.Certificate
	seenBy []string
}

type validQC struct {
	qc     *qc.QC
	seenBy []string
}

func (c *checker) violate(v Violation) {
	if v.Invariant == "" {
		v.Invariant = invariantOf[v.Kind]
	}
	c.r.Violations = append(c.r.Violations, v)
}

func (c *checker) note(format string, args ...any) {
	c.r.Notes = append(c.r.Notes, fmt.Sprintf(format, args...))
}

// name returns the committee name of id, or a short hex form.
func (c *checker) name(id qc.ValidatorID) string {
	if c.committee != nil {
		if m, ok := c.committee.Member(id); ok {
			return m.Name
		}
	}
	return "non-member " + id.String()
}

func (c *checker) honest(id qc.ValidatorID) bool {
	for _, m := range c.h.Committee.Members {
		if m.ID == id {
			return m.Honest
		}
	}
	return false
}

// honestSources filters names down to honest sidecars.
func (c *checker) honestSources(names []string) []string {
	var out []string
	for _, n := range names {
		if c.honestSource[n] {
			out = append(out, n)
		}
	}
	return out
}

func (c *checker) sources() {
	c.honestSource = make(map[string]bool)
	kinds := make(map[string]bool)
	for _, s := range c.h.Sources {
		kinds[s.Name] = true
		if s.Kind == SourceSidecar && s.Honest {
			c.honestSource[s.Name] = true
		}
	}
	// Histories built by hand may name sidecars without sources: members'
	// names then say who is honest.
	for _, m := range c.h.Committee.Members {
		if !kinds[m.Name] && m.Honest {
			c.honestSource[m.Name] = true
		}
	}
	for _, s := range c.h.Sources {
		sum := SourceSummary{Name: s.Name, Kind: s.Kind, Honest: s.Honest, Reachable: s.Reachable, Pages: s.Pages,
			Certs: s.Certs, QCs: s.QCs, Evidence: s.Evidence, Statuses: s.Statuses, Errors: s.ErrorCount}
		if len(s.Errors) > 0 {
			sum.FirstError = s.Errors[0]
		}
		c.r.Sources = append(c.r.Sources, sum)
		if !s.Reachable {
			c.note("source %s (%s, %s) was unreachable: its data is missing from the checks (%s)", s.Name, s.Kind, s.URL, sum.FirstError)
		} else if s.ErrorCount > 0 {
			c.note("source %s had %d errors while collecting, first: %s", s.Name, s.ErrorCount, sum.FirstError)
		}
	}
}

// addSigned records a verified certificate.
func (c *checker) addSigned(cert qc.Certificate, seenBy []string) {
	k := signerKey{cert.Signer, cert.Effects.ContentionKey()}
	m := c.signed[k]
	if m == nil {
		m = make(map[txEffects]*signedEntry)
		c.signed[k] = m
	}
	te := txEffects{cert.TxHash, cert.EffectsHash}
	e := m[te]
	if e == nil {
		e = &signedEntry{cert: cert}
		m[te] = e
	}
	for _, s := range seenBy {
		e.seenBy = addName(e.seenBy, s)
	}
	if _, ok := c.txKey[cert.TxHash]; !ok {
		c.txKey[cert.TxHash] = k.key
	}
}

func (c *checker) certificates() {
	c.signed = make(map[signerKey]map[txEffects]*signedEntry)
	c.txKey = make(map[qc.Hash]qc.ContentionKey)
	st := &c.r.Certificates
	st.InvalidBySigner = make(map[string]int)
	for i := range c.h.Certificates {
		rec := &c.h.Certificates[i]
		st.Distinct++
		if err := c.committee.VerifyCertificate(&rec.Cert); err != nil {
			st.Invalid++
			st.InvalidBySigner[c.name(rec.Cert.Signer)]++
			if hs := c.honestSources(rec.SeenBy); len(hs) > 0 {
				c.violate(Violation{Kind: KindHonestServedInvalid,
					Message:    fmt.Sprintf("honest sidecar(s) served a certificate by %s for tx %s that does not verify: %v", c.name(rec.Cert.Signer), rec.Cert.TxHash, err),
					TxHashes:   []string{rec.Cert.TxHash.Hex()},
					Validators: []string{c.name(rec.Cert.Signer)}, Sources: hs})
			}
			continue
		}
		st.Valid++
		c.addSigned(rec.Cert, rec.SeenBy)
	}
}

func (c *checker) evidence() {
	c.detected = make(map[signerKey][]string)
	st := &c.r.Evidence
	st.BySigner = make(map[string]int)
	for i := range c.h.Evidence {
		rec := &c.h.Evidence[i]
		st.Records++
		ev := &rec.Evidence
		if err := c.committee.VerifyEquivocation(ev); err != nil {
			st.Invalid++
			if hs := c.honestSources(rec.ReportedBy); len(hs) > 0 {
				c.violate(Violation{Kind: KindHonestServedInvalid,
					Message:    fmt.Sprintf("honest sidecar(s) reported equivocation evidence against %s that does not verify: %v", c.name(ev.Signer()), err),
					TxHashes:   []string{ev.First.TxHash.Hex(), ev.Second.TxHash.Hex()},
					Validators: []string{c.name(ev.Signer())}, Sources: hs})
			}
			continue
		}
		st.Valid++
		st.BySigner[c.name(ev.Signer())]++
		// Evidence certificates are signatures like any other.
		c.addSigned(ev.First, rec.ReportedBy)
		c.addSigned(ev.Second, rec.ReportedBy)
		k := signerKey{ev.Signer(), ev.Key()}
		for _, s := range c.honestSources(rec.ReportedBy) {
			c.detected[k] = addName(c.detected[k], s)
		}
	}
}

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
		for te, e := range m {
			txs = append(txs, te.tx.Hex()+"/effects "+te.effects.Hex())
			for _, s := range e.seenBy {
				seen = addName(seen, s)
			}
		}
		sort.Strings(txs)
		name := c.name(k.signer)
		if c.honest(k.signer) {
			c.violate(Violation{Kind: KindHonestDoubleSign,
				Message:  fmt.Sprintf("honest validator %s signed %d different transactions for contention key %s", name, len(m), k.key),
				TxHashes: txs, Validators: []string{name}, Key: k.key.String(), Sources: seen})
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

// addValid records a verified QC.
func (c *checker) addValid(q *qc.QC, seenBy []string) {
	te := txEffects{q.TxHash, q.EffectsHash}
	v := c.valid[te]
	if v == nil {
		v = &validQC{qc: q}
		c.valid[te] = v
		if _, ok := c.certified[q.TxHash]; !ok {
			c.certified[q.TxHash] = v
		}
		if _, ok := c.txKey[q.TxHash]; !ok {
			c.txKey[q.TxHash] = q.Effects().ContentionKey()
		}
	}
	for _, s := range seenBy {
		v.seenBy = addName(v.seenBy, s)
	}
	if !c.distinctBy[q.Hash] {
		c.distinctBy[q.Hash] = true
		c.distinct = append(c.distinct, q)
	}
}

func (c *checker) qcs() {
	c.valid = make(map[txEffects]*validQC)
	c.certified = make(map[qc.Hash]*validQC)
	c.distinctBy = make(map[qc.Hash]bool)
	st := &c.r.QCs
	for i := range c.h.QCs {
		rec := &c.h.QCs[i]
		st.Distinct++
		err := c.committee.VerifyQC(rec.QC)
		c.addQCSignatures(rec.QC, rec.SeenBy, err == nil)
		if err != nil {
			st.Invalid++
			if hs := c.honestSources(rec.SeenBy); len(hs) > 0 {
				c.violate(Violation{Kind: KindHonestServedInvalid,
					Message:  fmt.Sprintf("honest sidecar(s) served a QC for tx %s that does not verify: %v", rec.QC.TxHash, err),
					TxHashes: []string{rec.QC.TxHash.Hex()}, Validators: c.signerNames(rec.QC), Sources: hs})
			}
			continue
		}
		st.Valid++
		c.addValid(rec.QC, rec.SeenBy)
	}
}

// addQCSignatures records the certificates inside a QC as signatures by
// their signers: a QC proves a double-sign as well as a lone certificate.
// verified says the whole QC verified (so every certificate does).
func (c *checker) addQCSignatures(q *qc.QC, seenBy []string, verified bool) {
	for i := range q.Certs {
		cert := q.Certs[i]
		if !verified && c.committee.VerifyCertificate(&cert) != nil {
			continue
		}
		c.addSigned(cert, seenBy)
	}
}

func (c *checker) signerNames(q *qc.QC) []string {
	var out []string
	for i := range q.Certs {
		out = append(out, c.name(q.Certs[i].Signer))
	}
	return out
}

func (c *checker) lightClients() {
	per := make(map[string]*LightClientStats)
	var order []string
	for _, l := range c.h.LightClientQCs {
		s := per[l.Client]
		if s == nil {
			s = &LightClientStats{Client: l.Client}
			per[l.Client] = s
			order = append(order, l.Client)
		}
		s.Accepted++
		q, err := decodeQC(l.Raw)
		if err == nil {
			err = c.committee.VerifyQC(q)
			c.addQCSignatures(q, []string{l.Client}, err == nil)
		}
		if err != nil {
			v := Violation{Kind: KindLightClientInvalidQC,
				Message: fmt.Sprintf("light client %s accepted a QC that does not verify: %v", l.Client, err), Sources: []string{l.Client}}
			if q != nil {
				v.TxHashes = []string{q.TxHash.Hex()}
				v.Validators = c.signerNames(q)
			}
			c.violate(v)
			continue
		}
		s.Verified++
		c.addValid(q, []string{l.Client})
	}
	sort.Strings(order)
	for _, name := range order {
		c.r.LightClients = append(c.r.LightClients, *per[name])
	}
}

func decodeQC(raw []byte) (*qc.QC, error) {
	pq, err := apiserver.ParseQCProto(raw)
	if err != nil {
		return nil, err
	}
	return pq.ToQC()
}

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

type accountAsset struct {
	account, asset qc.Address
}

// balances checks §7.3 for every (account, token): the amounts of its
// certified payments must not exceed its initial balance plus its certified
// credits. With a run that records fee terms, the maximum fees of the
// certified payments an account pays for are debits too (SPEC §4): a QC
// whose payment cannot also pay its fee is a promise the chain may not keep.
// Amounts alone over the limit are an overdraft; amounts within it but
// fees beyond it are an uncovered fee.
func (c *checker) balances() {
	debits := make(map[accountAsset]*big.Int)
	credits := make(map[accountAsset]*big.Int)
	debitTxs := make(map[accountAsset][]string)
	add := func(m map[accountAsset]*big.Int, k accountAsset, v uint64) {
		if m[k] == nil {
			m[k] = new(big.Int)
		}
		m[k].Add(m[k], new(big.Int).SetUint64(v))
	}
	// One QC per transaction: several QCs for one transaction (different
	// certificate subsets) certify the same payment once.
	for _, v := range c.certified {
		e := v.qc.Effects()
		add(debits, accountAsset{e.Sender, e.Asset}, e.Amount)
		add(credits, accountAsset{e.Recipient, e.Asset}, e.Amount)
		debitTxs[accountAsset{e.Sender, e.Asset}] = append(debitTxs[accountAsset{e.Sender, e.Asset}], v.qc.TxHash.Hex())
	}
	fees := c.feeDebits()
	keys := make([]accountAsset, 0, len(debits)+len(fees))
	for k := range debits {
		keys = append(keys, k)
	}
	for k := range fees {
		if debits[k] == nil {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if x := bytes.Compare(keys[i].account[:], keys[j].account[:]); x != 0 {
			return x < 0
		}
		return bytes.Compare(keys[i].asset[:], keys[j].asset[:]) < 0
	})
	var unknown, feeUnknown []string
	for _, k := range keys {
		fee := fees[k]
		if fee != nil && c.r.Fees != nil {
			c.r.Fees.Payers++
		}
		initial, ok := c.h.initialBalance(k.account, k.asset)
		if !ok {
			if debits[k] != nil {
				unknown = append(unknown, k.account.Hex())
			}
			if fee != nil {
				feeUnknown = append(feeUnknown, k.account.Hex()+" (fee token "+tokenName(k.asset)+")")
			}
			continue
		}
		c.r.Balances.Checked++
		limit := new(big.Int).Set(initial)
		if cr := credits[k]; cr != nil {
			limit.Add(limit, cr)
		}
		amounts := orZero(debits[k])
		if amounts.Cmp(limit) > 0 {
			txs := debitTxs[k]
			sort.Strings(txs)
			c.violate(Violation{Kind: KindOverdraft,
				Message: fmt.Sprintf("account %s: certified debits %s exceed initial balance %s + certified credits %s of token %s",
					k.account.Hex(), amounts, initial, orZero(credits[k]), k.asset.Hex()),
				Account: k.account.Hex(), TxHashes: txs})
			continue
		}
		if fee == nil {
			continue
		}
		if total := new(big.Int).Add(amounts, fee.sum); total.Cmp(limit) > 0 {
			c.violate(Violation{Kind: KindFeeUncovered,
				Message: fmt.Sprintf("account %s: certified amounts %s plus the maximum fees %s of the %d certified payment(s) it pays fees for exceed initial balance %s + certified credits %s of %s by %s: %s",
					k.account.Hex(), amounts, fee.sum, len(fee.items), initial, orZero(credits[k]), tokenName(k.asset),
					new(big.Int).Sub(total, limit), fee.describe()),
				Account: k.account.Hex(), TxHashes: fee.txHashes()})
		}
	}
	c.r.Balances.Unchecked = len(unknown)
	if len(unknown) > 0 {
		c.note("overdraft not checked for %d account(s) with certified debits but no recorded initial balance of the token, e.g. %s", len(unknown), unknown[0])
	}
	if c.r.Fees != nil {
		c.r.Fees.Unchecked = len(feeUnknown)
	}
	if len(feeUnknown) > 0 {
		c.note("maximum fees not checked for %d payer(s) without a recorded initial balance of their fee token, e.g. %s", len(feeUnknown), feeUnknown[0])
	}
}

func orZero(b *big.Int) *big.Int {
	if b == nil {
		return new(big.Int)
	}
	return b
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

func paymentNames(ps []*Payment) string {
	if len(ps) == 0 {
		return ""
	}
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		if p.Name != "" {
			names = append(names, p.Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return " (" + strings.Join(names, ", ") + ")"
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// phases computes time-to-QC percentiles per phase, in phase order; phases
// named by payments but not listed in the run come last.
func (c *checker) phases() {
	type acc struct {
		stats PhaseStats
		ttqc  []time.Duration
	}
	byName := make(map[string]*acc)
	var order []string
	get := func(name string) *acc {
		a := byName[name]
		if a == nil {
			a = &acc{stats: PhaseStats{Name: name}}
			byName[name] = a
			order = append(order, name)
		}
		return a
	}
	listed := slices.Clone(c.run.Phases)
	sort.SliceStable(listed, func(i, j int) bool { return listed[i].Start.Before(listed[j].Start) })
	for _, ph := range listed {
		a := get(ph.Name)
		a.stats.Start, a.stats.End, a.stats.NoQuorum, a.stats.Sides = ph.Start, ph.End, ph.NoQuorum, ph.Sides
	}
	all := &acc{stats: PhaseStats{Name: "all"}}
	for i := range c.run.Payments {
		p := &c.run.Payments[i]
		name := p.Phase
		if name == "" {
			name = "(none)"
		}
		for _, a := range []*acc{get(name), all} {
			a.stats.Sent++
			if p.Accepted() {
				a.stats.Accepted++
			}
			if p.RejectCode() != "" {
				a.stats.Rejected++
			}
			if _, ok := c.certified[p.TxHash]; ok && !p.TxHash.IsZero() {
				a.stats.WithQC++
			}
			if !p.QCAt.IsZero() && !p.Sent.IsZero() && !p.QCAt.Before(p.Sent) {
				a.ttqc = append(a.ttqc, p.QCAt.Sub(p.Sent))
			}
		}
	}
	for _, name := range order {
		a := byName[name]
		a.stats.TimeToQC = percentiles(a.ttqc)
		c.r.Phases = append(c.r.Phases, a.stats)
	}
	all.stats.TimeToQC = percentiles(all.ttqc)
	c.r.Phases = append(c.r.Phases, all.stats)
}

// percentiles returns nearest-rank percentiles of ds.
func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	slices.Sort(ds)
	at := func(p float64) time.Duration {
		rank := int(p*float64(len(ds))+0.999999999) - 1
		return ds[max(0, min(rank, len(ds)-1))]
	}
	return Percentiles{N: len(ds), P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: ds[len(ds)-1]}
}

func (c *checker) finish() *Report {
	r := c.r
	r.Invariants = invariantResults(r, c.h, c.run)
	sort.SliceStable(r.Violations, func(i, j int) bool { return r.Violations[i].Invariant < r.Violations[j].Invariant })
	r.OKResult = r.OK()
	return r
}

// ErrViolations is returned by Report.Err when an invariant is broken.
var ErrViolations = errors.New("safety invariants violated")
