package safety

import (
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"strings"
	"time"

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
	// KindUnverifiableQC: an honest sidecar or a light client holds a QC of
	// an epoch the history has no committee for, so whether it conflicts
	// with another QC (§7.1) or verifies (§7.4) cannot be decided.
	KindUnverifiableQC = "unverifiable_qc"
	// KindBadHistory: the history cannot be checked (no valid committee).
	KindBadHistory = "bad_history"
)

// invariantOf maps a violation kind to the SPEC §7 invariant.
var invariantOf = map[string]string{
	KindConflictingQC: "§7.1", KindHonestDoubleSign: "§7.2", KindOverdraft: "§7.3", KindFeeUncovered: "§7.3/§4", KindInsideMargin: "§4",
	KindLightClientInvalidQC: "§7.4", KindQCWithoutQuorum: "§7.5", KindNotCompleted: "§7.5",
	KindNotSettled: "§7.5", KindHonestServedInvalid: "§7.1/§7.4", KindUnverifiableQC: "§7.1/§7.4", KindBadHistory: "-",
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
	committees, err := h.QCommittees()
	if err != nil {
		c.violate(Violation{Kind: KindBadHistory, Message: err.Error()})
		return c.finish()
	}
	c.setCommittees(committees)
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
		c.boundaries()
	}
	return c.finish()
}

type checker struct {
	h    *History
	run  *Run
	opts CheckOptions
	r    *Report
	// committees of every epoch of the history
	committees *Committees
	// members of every epoch by key and by seat
	byID, bySeat map[qc.ValidatorID][]MemberInfo

	honestSource map[string]bool
	// valid certificates per (seat, contention key) per (tx, effects),
	// over every epoch: a validator signs one transaction per key, ever
	signed map[signerKey]map[txEffects]*signedEntry
	// contention key of each transaction, from valid certificates
	txKey map[qc.Hash]qc.ContentionKey
	// honest sources that reported verified evidence per (seat, key)
	detected map[signerKey][]string
	// valid QCs per (tx, effects), of every epoch
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

// signerKey is a seat (a committee file's member key, or a consensus key)
// and a contention key.
type signerKey struct {
	signer qc.ValidatorID
	key    qc.ContentionKey
}

type txEffects struct{ tx, effects qc.Hash }

type signedEntry struct {
	cert   qc.Certificate
	seenBy []string
	epochs []uint64 // the epochs it was signed in, ascending
}

type validQC struct {
	qc     *qc.QC
	seenBy []string
	epochs []uint64 // the epochs it was certified in, ascending
}

// addEpoch adds e to a sorted set of epochs.
func addEpoch(list []uint64, e uint64) []uint64 {
	i, found := slices.BinarySearch(list, e)
	if found {
		return list
	}
	return slices.Insert(list, i, e)
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

// setCommittees records the committees of every epoch and their members,
// and summarises them in the report.
func (c *checker) setCommittees(committees *Committees) {
	c.committees = committees
	c.byID = make(map[qc.ValidatorID][]MemberInfo)
	c.bySeat = make(map[qc.ValidatorID][]MemberInfo)
	for _, info := range c.h.CommitteeInfos() {
		for _, m := range info.Members {
			c.byID[m.ID] = append(c.byID[m.ID], m)
			c.bySeat[m.SeatOrID()] = append(c.bySeat[m.SeatOrID()], m)
		}
	}
	first, _ := committees.Epoch(c.h.Committee.Epoch)
	c.r.Committee = CommitteeSummary{ChainID: c.h.Committee.ChainID, Epoch: c.h.Committee.Epoch,
		N: first.N(), F: first.F(), Quorum: first.Quorum()}
	if len(committees.List()) > 1 {
		for _, com := range committees.List() {
			c.r.Committee.Epochs = append(c.r.Committee.Epochs, EpochSummary{Epoch: com.Domain().Epoch, N: com.N(), F: com.F(), Quorum: com.Quorum()})
		}
	}
	for _, info := range c.h.CommitteeInfos() {
		for _, m := range info.Members {
			if !m.Honest && !slices.Contains(c.r.Committee.Byzantine, m.Name) {
				c.r.Committee.Byzantine = append(c.r.Committee.Byzantine, m.Name)
			}
		}
	}
}

// name returns the committee name of a member key, or a short hex form.
func (c *checker) name(id qc.ValidatorID) string {
	if ms := c.byID[id]; len(ms) > 0 {
		return ms[0].Name
	}
	return "non-member " + id.String()
}

// seatName names a seat: by its own member's name when it signs with its
// own key, else by the names of the keys that sign for it.
func (c *checker) seatName(seat qc.ValidatorID) string {
	if ms := c.byID[seat]; len(ms) > 0 && ms[0].SeatOrID() == seat {
		return ms[0].Name
	}
	var names []string
	for _, m := range c.bySeat[seat] {
		names = addName(names, m.Name)
	}
	if len(names) == 0 {
		return "non-member " + seat.String()
	}
	return "seat " + seat.String() + " (" + strings.Join(names, "+") + ")"
}

// honest reports whether member key id was run honestly in every epoch it
// is a member of (false for a non-member).
func (c *checker) honest(id qc.ValidatorID) bool { return allHonest(c.byID[id]) }

// honestSeat reports whether every key that signs for seat was run
// honestly.
func (c *checker) honestSeat(seat qc.ValidatorID) bool { return allHonest(c.bySeat[seat]) }

func allHonest(ms []MemberInfo) bool {
	for _, m := range ms {
		if !m.Honest {
			return false
		}
	}
	return len(ms) > 0
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
	for _, info := range c.h.CommitteeInfos() {
		for _, m := range info.Members {
			if !kinds[m.Name] && allHonest(c.byID[m.ID]) {
				c.honestSource[m.Name] = true
			}
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

func orZero(b *big.Int) *big.Int {
	if b == nil {
		return new(big.Int)
	}
	return b
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

func (c *checker) finish() *Report {
	r := c.r
	r.Invariants = invariantResults(r, c.h, c.run)
	sort.SliceStable(r.Violations, func(i, j int) bool { return r.Violations[i].Invariant < r.Violations[j].Invariant })
	r.OKResult = r.OK()
	return r
}

// ErrViolations is returned by Report.Err when an invariant is broken.
var ErrViolations = errors.New("safety invariants violated")
