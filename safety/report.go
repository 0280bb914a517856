package safety

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Violation is one broken invariant, with what is needed to debug it.
type Violation struct {
	Kind       string   `json:"kind"`      // one of the Kind constants
	Invariant  string   `json:"invariant"` // the SPEC §7 invariant, e.g. "§7.1"
	Message    string   `json:"message"`
	TxHashes   []string `json:"tx_hashes,omitempty"`
	Validators []string `json:"validators,omitempty"`
	Account    string   `json:"account,omitempty"`
	Key        string   `json:"contention_key,omitempty"`
	Sources    []string `json:"sources,omitempty"` // sidecars or light clients that served the evidence
	// Epochs are the committee epochs of the QCs or certificates involved,
	// when the history has committees of more than one epoch.
	Epochs []uint64 `json:"epochs,omitempty"`
}

// Report is the outcome of Check.
type Report struct {
	CheckedAt    time.Time          `json:"checked_at"`
	OKResult     bool               `json:"ok"` // OK() when Check returned
	Committee    CommitteeSummary   `json:"committee"`
	Invariants   []InvariantResult  `json:"invariants"`
	Violations   []Violation        `json:"violations"`
	Notes        []string           `json:"notes,omitempty"`
	Sources      []SourceSummary    `json:"sources"`
	Certificates CertStats          `json:"certificates"`
	QCs          QCStats            `json:"qcs"`
	Evidence     EvidenceStats      `json:"evidence"`
	Byzantine    []ByzantineFinding `json:"byzantine,omitempty"`
	LightClients []LightClientStats `json:"light_clients,omitempty"`
	Balances     BalanceStats       `json:"balances"`
	Fees         *FeeStats          `json:"fees,omitempty"`     // nil without a Run
	Payments     *PaymentStats      `json:"payments,omitempty"` // nil without a Run
	Phases       []PhaseStats       `json:"phases,omitempty"`   // without a Run: none
	// Boundaries are the run's epoch boundaries with the time to QC around
	// each (without a Run, or on a network without epochs: none).
	Boundaries []BoundaryStats `json:"boundaries,omitempty"`
	// ClockTolerance is the CheckOptions.ClockTolerance §7.5 was judged
	// with in no-quorum phases.
	ClockTolerance time.Duration `json:"clock_tolerance_ns"`
}

// CommitteeSummary describes the committee checked against (the
// history's Committee) and, for a run over several epochs, every epoch's.
type CommitteeSummary struct {
	ChainID   uint64         `json:"chain_id"`
	Epoch     uint64         `json:"epoch"`
	N         int            `json:"n"`
	F         int            `json:"f"`
	Quorum    int            `json:"quorum"`
	Byzantine []string       `json:"byzantine,omitempty"` // members run as not honest
	Epochs    []EpochSummary `json:"epochs,omitempty"`    // ascending; empty for one committee
}

// EpochSummary describes one epoch's committee.
type EpochSummary struct {
	Epoch  uint64 `json:"epoch"`
	N      int    `json:"n"`
	F      int    `json:"f"`
	Quorum int    `json:"quorum"`
}

// InvariantResult says whether one SPEC §7 invariant held.
type InvariantResult struct {
	ID         string `json:"id"` // "§7.1"
	Title      string `json:"title"`
	Checked    bool   `json:"checked"`
	Violations int    `json:"violations"`
	Scope      string `json:"scope"` // what was checked
}

// SourceSummary is what one source gave.
type SourceSummary struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	Honest     bool   `json:"honest"`
	Reachable  bool   `json:"reachable"`
	Pages      int    `json:"pages"`
	Certs      int    `json:"certificates"`
	QCs        int    `json:"qcs"`
	Evidence   int    `json:"evidence"`
	Statuses   int    `json:"statuses"`
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
}

// CertStats counts distinct certificates.
type CertStats struct {
	Distinct int `json:"distinct"`
	Valid    int `json:"valid"`
	Invalid  int `json:"invalid"`
	// InvalidBySigner attributes certificates that do not verify to the
	// signer they name (expected from a validator publishing invalid
	// signatures; an invalid signature is not a signature by that key).
	InvalidBySigner map[string]int `json:"invalid_by_signer"`
}

// QCStats counts distinct QCs.
type QCStats struct {
	Distinct int `json:"distinct"`
	Valid    int `json:"valid"`
	Invalid  int `json:"invalid"`
	// UnknownEpoch counts QCs that carry an epoch the history has no
	// committee for: neither valid nor invalid.
	UnknownEpoch   int `json:"unknown_epoch,omitempty"`
	Certified      int `json:"certified_txs"`   // transactions with a valid QC
	ContentionKeys int `json:"contention_keys"` // keys with a valid QC
	// ValidByEpoch counts valid QCs (from sidecars and light clients)
	// per epoch, for a history with committees of several epochs.
	ValidByEpoch map[uint64]int `json:"valid_by_epoch,omitempty"`
}

// EvidenceStats counts the equivocation evidence sidecars reported.
type EvidenceStats struct {
	Records  int            `json:"records"`
	Valid    int            `json:"valid"`
	Invalid  int            `json:"invalid"`
	BySigner map[string]int `json:"by_signer"`
}

// ByzantineFinding is a double-sign by a validator run as Byzantine:
// expected behaviour, not a violation.
type ByzantineFinding struct {
	Validator string   `json:"validator"`
	Key       string   `json:"contention_key"`
	Signed    []string `json:"signed"` // tx/effects pairs
	// DetectedBy lists the honest sidecars that reported the evidence;
	// empty means no honest board exposed it (informational).
	DetectedBy []string `json:"detected_by"`
}

// LightClientStats counts what one light client accepted.
type LightClientStats struct {
	Client   string `json:"client"`
	Accepted int    `json:"accepted"`
	Verified int    `json:"verified"`
}

// BalanceStats counts the (account, token) pairs checked for overdraft:
// those debited with certified amounts and, with a run recording fee
// terms, those debited with maximum fees only (a payer's native balance).
type BalanceStats struct {
	Checked   int `json:"checked"`
	Unchecked int `json:"unchecked"` // accounts debited with amounts but without an initial balance
}

// FeeStats is what the settlement-guarantee rule judged (SPEC §4): the
// maximum fees of certified payments counted against their payers, and
// the validity windows of certified 0x76 payments.
type FeeStats struct {
	// Counted is the number of certified transactions whose maximum fee
	// was counted; NoTerms those the run records no fee terms for.
	Counted int `json:"counted"`
	NoTerms int `json:"no_terms"`
	// Payers is the number of (payer, fee token) pairs debited with fees;
	// Unchecked those without a recorded initial balance of the fee token.
	Payers    int `json:"payers"`
	Unchecked int `json:"unchecked"`
	// Windows is the number of certified 0x76 payments whose validity
	// window was judged, with SettlementMargin.
	Windows          int           `json:"windows"`
	SettlementMargin time.Duration `json:"settlement_margin_ns"`
}

// PaymentStats counts the driver's payments.
type PaymentStats struct {
	Sent                          int            `json:"sent"`
	Accepted                      int            `json:"accepted"` // entry sidecar returned its certificate
	ClientSawQC                   int            `json:"client_saw_qc"`
	WithQC                        int            `json:"with_qc"` // a valid QC exists
	QCAfterClientGaveUp           int            `json:"qc_after_client_gave_up"`
	Settled                       int            `json:"settled"`
	RejectedByCode                map[string]int `json:"rejected_by_code"`
	Errors                        map[string]int `json:"errors"`
	Chained                       int            `json:"chained"`
	ChainedWithQC                 int            `json:"chained_with_qc"`
	Conflicting                   int            `json:"conflicting"`
	ConflictingWithQC             int            `json:"conflicting_with_qc"`
	ConflictGroups                int            `json:"conflict_groups"`
	ConflictGroupsDoubleCertified int            `json:"conflict_groups_double_certified"`
	StrandedMinority              int            `json:"stranded_minority"` // accepted on a side without quorum, no QC
	// OnChainWithoutQC are quorum-side payments that got no QC because
	// their transaction reached the chain first (History.ChainIncluded).
	OnChainWithoutQC int `json:"on_chain_without_qc,omitempty"`
	SettledTxs       int `json:"settled_txs"`      // certified transactions on chain (all, not only the run's)
	SettledByNonce   int `json:"settled_by_nonce"` // of which shown only by the chain nonce
	// Fee-tight payments (Payment.FeeTight): sent, with a valid QC, settled,
	// and rejected by code.
	FeeTight               int            `json:"fee_tight"`
	FeeTightWithQC         int            `json:"fee_tight_with_qc"`
	FeeTightSettled        int            `json:"fee_tight_settled"`
	FeeTightRejectedByCode map[string]int `json:"fee_tight_rejected_by_code,omitempty"`
}

// Rejected returns the number of rejected payments.
func (p *PaymentStats) Rejected() int {
	n := 0
	for _, v := range p.RejectedByCode {
		n += v
	}
	return n
}

// ErrorCount returns the number of payments that ended in an error.
func (p *PaymentStats) ErrorCount() int {
	n := 0
	for _, v := range p.Errors {
		n += v
	}
	return n
}

// PhaseStats is one phase's payments and time to QC (client-observed).
type PhaseStats struct {
	Name     string      `json:"name"`
	Start    time.Time   `json:"start,omitzero"`
	End      time.Time   `json:"end,omitzero"`
	NoQuorum bool        `json:"no_quorum,omitempty"`
	Sides    [][]string  `json:"sides,omitempty"` // validators that could reach each other, per side
	Sent     int         `json:"sent"`
	Accepted int         `json:"accepted"`
	Rejected int         `json:"rejected"`
	WithQC   int         `json:"with_qc"`
	TimeToQC Percentiles `json:"time_to_qc"`
}

// Percentiles of a set of durations (nearest rank).
type Percentiles struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50_ns"`
	P95 time.Duration `json:"p95_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

var invariantTitles = []struct{ id, title string }{
	{"§7.1", "no two valid QCs for one contention key"},
	{"§7.2", "no honest validator signs twice for one key"},
	{"§7.3", "certified debits <= balance + certified credits"},
	{"§7.4", "every QC a light client accepted verifies"},
	{"§7.5", "no QC without a quorum; healed payments complete"},
	{"§4", "every QC can settle: max fee covered, 0x76 margin"},
}

func invariantResults(r *Report, h *History, run *Run) []InvariantResult {
	out := make([]InvariantResult, 0, len(invariantTitles))
	for _, it := range invariantTitles {
		ir := InvariantResult{ID: it.id, Title: it.title, Checked: h != nil && r.Committee.N > 0}
		for _, v := range r.Violations {
			if strings.Contains(v.Invariant, it.id) {
				ir.Violations++
			}
		}
		switch it.id {
		case "§7.1":
			ir.Scope = fmt.Sprintf("%d valid QCs, %d contention keys", r.QCs.Valid+lightValid(r), r.QCs.ContentionKeys)
		case "§7.2":
			ir.Scope = fmt.Sprintf("%d valid certificates, %d evidence records", r.Certificates.Valid, r.Evidence.Records)
		case "§7.3":
			ir.Scope = fmt.Sprintf("%d account balances", r.Balances.Checked)
			if r.Balances.Unchecked > 0 {
				ir.Scope += fmt.Sprintf(", %d without an initial balance", r.Balances.Unchecked)
			}
		case "§7.4":
			n := 0
			for _, l := range r.LightClients {
				n += l.Accepted
			}
			ir.Scope = fmt.Sprintf("%d QCs from %d light clients", n, len(r.LightClients))
		case "§7.5":
			if run == nil {
				ir.Checked = false
				ir.Scope = "needs the run"
			} else if r.Payments != nil {
				ir.Scope = fmt.Sprintf("%d payments, %d certified transactions", r.Payments.Sent, r.QCs.Certified)
				if n := noQuorumCount(run); n > 0 {
					ir.Scope += fmt.Sprintf(", %d no-quorum phase(s) judged by certificate times (clock tolerance %s)", n, r.ClockTolerance)
				}
			}
		case "§4":
			// Judged only from fee terms the run records.
			f := r.Fees
			switch {
			case run == nil || f == nil:
				ir.Checked = false
				ir.Scope = "needs the run"
			case f.Counted == 0:
				ir.Checked = false
				ir.Scope = "the run records no fee terms"
			default:
				ir.Scope = fmt.Sprintf("max fees of %d certified payments on %d payer balances", f.Counted, f.Payers-f.Unchecked)
				if f.Unchecked > 0 {
					ir.Scope += fmt.Sprintf(", %d without an initial balance", f.Unchecked)
				}
				if f.NoTerms > 0 {
					ir.Scope += fmt.Sprintf(", %d certified without fee terms", f.NoTerms)
				}
				ir.Scope += fmt.Sprintf("; %d 0x76 validity windows (margin %s)", f.Windows, f.SettlementMargin)
			}
		}
		out = append(out, ir)
	}
	return out
}

func noQuorumCount(run *Run) int {
	n := 0
	for _, ph := range run.Phases {
		if ph.NoQuorum {
			n++
		}
	}
	return n
}

func lightValid(r *Report) int {
	n := 0
	for _, l := range r.LightClients {
		n += l.Verified
	}
	return n
}

// OK reports whether no invariant was violated.
func (r *Report) OK() bool { return len(r.Violations) == 0 }

// Err returns nil when OK, else an error wrapping ErrViolations that
// counts the violations by kind.
func (r *Report) Err() error {
	if r.OK() {
		return nil
	}
	counts := r.CountByKind()
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s ×%d", k, counts[k])
	}
	return fmt.Errorf("%w: %s", ErrViolations, strings.Join(parts, ", "))
}

// OnlyLiveness reports whether there are violations and every one is of a
// kind more time could clear (KindNotCompleted, KindNotSettled): a driver
// waiting for a healed network to finish its pending payments may Collect
// and Check again, until a deadline, while this holds.
func (r *Report) OnlyLiveness() bool {
	if r.OK() {
		return false
	}
	for _, v := range r.Violations {
		if v.Kind != KindNotCompleted && v.Kind != KindNotSettled {
			return false
		}
	}
	return true
}

// CountByKind counts the violations of each kind.
func (r *Report) CountByKind() map[string]int {
	m := make(map[string]int)
	for _, v := range r.Violations {
		m[v.Kind]++
	}
	return m
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	r.OKResult = r.OK()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("safety: encode report: %w", err)
	}
	return nil
}

// maxTextViolations bounds the violations printed in full by WriteText.
const maxTextViolations = 50

// WriteText writes a report readable at a glance: the verdict, one line
// per invariant, then sources, payments, time to QC per phase, Byzantine
// findings, violations and notes.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	verdict := "PASS"
	if !r.OK() {
		verdict = fmt.Sprintf("FAIL (%d violations)", len(r.Violations))
	}
	ew.printf("SAFETY CHECK: %s\n", verdict)
	c := r.Committee
	ew.printf("committee: %d validators (f=%d, quorum %d), chain %d, epoch %d", c.N, c.F, c.Quorum, c.ChainID, c.Epoch)
	if len(c.Byzantine) > 0 {
		ew.printf("; Byzantine on purpose: %s", strings.Join(c.Byzantine, ", "))
	}
	if len(c.Epochs) > 0 {
		parts := make([]string, len(c.Epochs))
		for i, e := range c.Epochs {
			parts[i] = fmt.Sprintf("%d (%d validators, f=%d, quorum %d)", e.Epoch, e.N, e.F, e.Quorum)
		}
		ew.printf("\nepochs: %s", strings.Join(parts, ", "))
	}
	ew.printf("\n\n")

	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SPEC\tINVARIANT\tRESULT\tSCOPE")
	for _, it := range r.Invariants {
		res := "ok"
		switch {
		case it.Violations > 0:
			res = fmt.Sprintf("VIOLATED ×%d", it.Violations)
		case !it.Checked:
			res = "not checked"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", it.ID, it.Title, res, it.Scope)
	}
	tw.Flush()

	if len(r.Sources) > 0 {
		ew.printf("\nSources\n")
		tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		rows := groupSources(r.Sources)
		if len(rows) < len(r.Sources) {
			// Collected several times (board snapshots): one row per
			// source, with the largest counts of a collection and the
			// errors of all.
			fmt.Fprintln(tw, "  NAME\tKIND\tHONEST\tCOLLECTED\tUNREACHABLE\tCERTS\tQCS\tEVIDENCE\tSTATUSES\tERRORS")
			for _, g := range rows {
				s := g.max
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", s.Name, s.Kind, yesNo(s.Honest), g.times, g.unreachable, s.Certs, s.QCs, s.Evidence, s.Statuses, s.Errors)
			}
		} else {
			fmt.Fprintln(tw, "  NAME\tKIND\tHONEST\tREACHABLE\tCERTS\tQCS\tEVIDENCE\tSTATUSES\tERRORS")
			for _, s := range r.Sources {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", s.Name, s.Kind, yesNo(s.Honest), yesNo(s.Reachable), s.Certs, s.QCs, s.Evidence, s.Statuses, s.Errors)
			}
		}
		tw.Flush()
	}

	ew.printf("\nCertificates: %d distinct, %d valid, %d invalid", r.Certificates.Distinct, r.Certificates.Valid, r.Certificates.Invalid)
	if len(r.Certificates.InvalidBySigner) > 0 {
		ew.printf(" (%s)", countsText(r.Certificates.InvalidBySigner))
	}
	ew.printf("\nQCs: %d distinct, %d valid, %d invalid", r.QCs.Distinct, r.QCs.Valid, r.QCs.Invalid)
	if r.QCs.UnknownEpoch > 0 {
		ew.printf(", %d of an epoch without a committee", r.QCs.UnknownEpoch)
	}
	ew.printf("; %d certified transactions", r.QCs.Certified)
	if len(r.QCs.ValidByEpoch) > 0 {
		epochs := slices.Sorted(maps.Keys(r.QCs.ValidByEpoch))
		parts := make([]string, len(epochs))
		for i, e := range epochs {
			parts[i] = fmt.Sprintf("epoch %d: %d", e, r.QCs.ValidByEpoch[e])
		}
		ew.printf(" (valid QCs by %s)", strings.Join(parts, ", "))
	}
	ew.printf("\n")
	ew.printf("Evidence records: %d, %d valid", r.Evidence.Records, r.Evidence.Valid)
	if len(r.Evidence.BySigner) > 0 {
		ew.printf(" (against %s)", countsText(r.Evidence.BySigner))
	}
	ew.printf("\n")
	for _, l := range r.LightClients {
		ew.printf("Light client %s: %d QCs accepted, %d verify\n", l.Client, l.Accepted, l.Verified)
	}

	if p := r.Payments; p != nil {
		ew.printf("\nPayments: %d sent, %d accepted, %d with QC (%d seen by the client), %d settled, %d rejected, %d errors\n",
			p.Sent, p.Accepted, p.WithQC, p.ClientSawQC, p.Settled, p.Rejected(), p.ErrorCount())
		ew.printf("  chained: %d (%d with QC); double-spend attempts: %d payments in %d groups, %d with QC, %d groups with more than one QC\n",
			p.Chained, p.ChainedWithQC, p.Conflicting, p.ConflictGroups, p.ConflictingWithQC, p.ConflictGroupsDoubleCertified)
		if len(p.RejectedByCode) > 0 {
			ew.printf("  rejected by code: %s\n", countsText(p.RejectedByCode))
		}
		if len(p.Errors) > 0 {
			ew.printf("  errors: %s\n", countsText(p.Errors))
		}
		if p.FeeTight > 0 {
			ew.printf("  fee-tight: %d payments from accounts funded with exactly their amount and fee or less, %d with QC, %d settled",
				p.FeeTight, p.FeeTightWithQC, p.FeeTightSettled)
			if len(p.FeeTightRejectedByCode) > 0 {
				ew.printf("; rejected: %s", countsText(p.FeeTightRejectedByCode))
			}
			ew.printf("\n")
		}
		ew.printf("  certified transactions on chain: %d of %d", p.SettledTxs, r.QCs.Certified)
		if p.SettledByNonce > 0 {
			ew.printf(" (%d shown by the chain nonce only)", p.SettledByNonce)
		}
		ew.printf("\n")
	}
	if len(r.Phases) > 0 {
		ew.printf("\nTime to QC by phase (client-observed)\n")
		tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PHASE\tDURATION\tSENT\tACCEPTED\tREJECTED\tWITH QC\tTTQC N\tP50\tP95\tP99\tMAX")
		for _, ph := range r.Phases {
			dur := "-"
			if !ph.Start.IsZero() && !ph.End.IsZero() {
				dur = ph.End.Sub(ph.Start).Round(100 * time.Millisecond).String()
			}
			name := ph.Name
			if ph.NoQuorum && len(ph.Sides) > 0 {
				name += " (no quorum: " + sidesText(ph.Sides) + ")"
			} else if ph.NoQuorum {
				name += " (no quorum)"
			}
			t := ph.TimeToQC
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", name, dur, ph.Sent, ph.Accepted, ph.Rejected, ph.WithQC,
				t.N, ms(t.P50, t.N), ms(t.P95, t.N), ms(t.P99, t.N), ms(t.Max, t.N))
		}
		tw.Flush()
	}

	r.writeBoundaries(ew)

	if len(r.Byzantine) > 0 {
		undetected := 0
		for _, b := range r.Byzantine {
			if len(b.DetectedBy) == 0 {
				undetected++
			}
		}
		ew.printf("\nExpected Byzantine behaviour: %d double-signs by %s; %d exposed as evidence by honest sidecars, %d not\n",
			len(r.Byzantine), strings.Join(byzantineNames(r.Byzantine), ", "), len(r.Byzantine)-undetected, undetected)
	}

	if len(r.Violations) > 0 {
		ew.printf("\nVIOLATIONS\n")
		for i, v := range r.Violations {
			if i == maxTextViolations {
				ew.printf("  ... and %d more (see the JSON report)\n", len(r.Violations)-i)
				break
			}
			ew.printf("%3d. [%s %s] %s\n", i+1, v.Invariant, v.Kind, v.Message)
			if len(v.TxHashes) > 0 {
				ew.printf("     tx: %s\n", strings.Join(v.TxHashes, "\n         "))
			}
			if len(v.Validators) > 0 {
				ew.printf("     validators: %s\n", strings.Join(v.Validators, ", "))
			}
			if v.Account != "" {
				ew.printf("     account: %s\n", v.Account)
			}
			if len(v.Sources) > 0 {
				ew.printf("     seen by: %s\n", strings.Join(v.Sources, ", "))
			}
			if len(v.Epochs) > 0 {
				ew.printf("     epochs: %s\n", epochList(v.Epochs))
			}
		}
	}
	if len(r.Notes) > 0 {
		ew.printf("\nNotes\n")
		for _, n := range r.Notes {
			ew.printf("  - %s\n", n)
		}
	}
	return ew.err
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func ms(d time.Duration, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
}

func countsText(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func byzantineNames(fs []ByzantineFinding) []string {
	var names []string
	for _, f := range fs {
		if !slices.Contains(names, f.Validator) {
			names = append(names, f.Validator)
		}
	}
	sort.Strings(names)
	return names
}

// errWriter keeps the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }

// sourceGroup is one source collected one or more times.
type sourceGroup struct {
	max         SourceSummary // the largest counts of its collections, the errors of all
	times       int
	unreachable int
}

// groupSources folds the collections of each source (name and kind) into
// one row, in order of first appearance.
func groupSources(sources []SourceSummary) []sourceGroup {
	var out []sourceGroup
	index := make(map[[2]string]int)
	for _, s := range sources {
		k := [2]string{s.Name, s.Kind}
		i, ok := index[k]
		if !ok {
			index[k] = len(out)
			g := sourceGroup{max: s, times: 1}
			if !s.Reachable {
				g.unreachable = 1
			}
			out = append(out, g)
			continue
		}
		g := &out[i]
		g.times++
		if !s.Reachable {
			g.unreachable++
		}
		m := &g.max
		m.Reachable = m.Reachable || s.Reachable
		m.Certs, m.QCs, m.Evidence, m.Statuses = max(m.Certs, s.Certs), max(m.QCs, s.QCs), max(m.Evidence, s.Evidence), max(m.Statuses, s.Statuses)
		m.Errors += s.Errors
	}
	return out
}
