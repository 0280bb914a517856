package safety

// The JSON form of a Run, so a driver can store it beside its History and
// the pair can be re-checked offline.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"os"
	"time"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/qc"
)

type runJSON struct {
	Version    int            `json:"version"`
	Phases     []phaseJSON    `json:"phases"`
	Payments   []paymentJSON  `json:"payments"`
	Boundaries []boundaryJSON `json:"boundaries,omitempty"`
}

type boundaryJSON struct {
	Epoch  uint64    `json:"epoch"`
	Height uint64    `json:"height"`
	At     time.Time `json:"at"`
}

type phaseJSON struct {
	Name     string     `json:"name"`
	Start    time.Time  `json:"start"`
	End      time.Time  `json:"end"`
	NoQuorum bool       `json:"no_quorum,omitempty"`
	Sides    [][]string `json:"sides,omitempty"`
}

type paymentJSON struct {
	Name          string    `json:"name"`
	TxHash        string    `json:"tx_hash,omitempty"`
	ChainTx       string    `json:"chain_tx,omitempty"`
	Sender        string    `json:"sender,omitempty"`
	Conflicting   bool      `json:"conflicting,omitempty"`
	ConflictGroup string    `json:"conflict_group,omitempty"`
	ParentTx      string    `json:"parent_tx,omitempty"`
	SubmittedTo   string    `json:"submitted_to"`
	QuorumSide    bool      `json:"quorum_side"`
	Phase         string    `json:"phase"`
	Sent          time.Time `json:"sent,omitzero"`
	QCAt          time.Time `json:"qc_at,omitzero"`
	Outcome       string    `json:"outcome"`
	// Fee is omitted when not recorded, so runs stored before fees were
	// recorded still read.
	Fee      *paymentFeeJSON `json:"fee,omitempty"`
	FeeTight bool            `json:"fee_tight,omitempty"`
}

type paymentFeeJSON struct {
	Payer       string        `json:"payer"`
	Token       string        `json:"token"` // the zero address: the native currency
	Max         string        `json:"max"`   // decimal, in the token's units
	ValidBefore apiserver.U64 `json:"valid_before,omitempty"`
	ValidAfter  apiserver.U64 `json:"valid_after,omitempty"`
}

// MarshalJSON encodes r with hashes and addresses as 0x hex.
func (r *Run) MarshalJSON() ([]byte, error) {
	j := runJSON{Version: historyVersion, Phases: make([]phaseJSON, len(r.Phases)), Payments: make([]paymentJSON, len(r.Payments))}
	for i, p := range r.Phases {
		j.Phases[i] = phaseJSON(p)
	}
	for _, b := range r.Boundaries {
		j.Boundaries = append(j.Boundaries, boundaryJSON(b))
	}
	for i, p := range r.Payments {
		pj := paymentJSON{Name: p.Name, Conflicting: p.Conflicting, ConflictGroup: p.ConflictGroup, SubmittedTo: p.SubmittedTo,
			QuorumSide: p.QuorumSide, Phase: p.Phase, Sent: p.Sent, QCAt: p.QCAt, Outcome: p.Outcome}
		if !p.TxHash.IsZero() {
			pj.TxHash = p.TxHash.Hex()
		}
		if !p.ChainTx.IsZero() {
			pj.ChainTx = p.ChainTx.Hex()
		}
		if p.Sender != (qc.Address{}) {
			pj.Sender = p.Sender.Hex()
		}
		if !p.ParentTx.IsZero() {
			pj.ParentTx = p.ParentTx.Hex()
		}
		pj.FeeTight = p.FeeTight
		if f := p.Fee; f != nil {
			pj.Fee = &paymentFeeJSON{Payer: f.Payer.Hex(), Token: f.Token.Hex(), Max: orZero(f.Max).String(),
				ValidBefore: apiserver.U64(f.ValidBefore), ValidAfter: apiserver.U64(f.ValidAfter)}
		}
		j.Payments[i] = pj
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes the form written by MarshalJSON.
func (r *Run) UnmarshalJSON(b []byte) error {
	var j runJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	if j.Version != historyVersion {
		return fmt.Errorf("run version %d is not supported (want %d)", j.Version, historyVersion)
	}
	out := Run{Phases: make([]Phase, len(j.Phases)), Payments: make([]Payment, len(j.Payments))}
	for i, p := range j.Phases {
		out.Phases[i] = Phase(p)
	}
	for _, b := range j.Boundaries {
		out.Boundaries = append(out.Boundaries, Boundary(b))
	}
	for i, pj := range j.Payments {
		p := Payment{Name: pj.Name, Conflicting: pj.Conflicting, ConflictGroup: pj.ConflictGroup, SubmittedTo: pj.SubmittedTo,
			QuorumSide: pj.QuorumSide, Phase: pj.Phase, Sent: pj.Sent, QCAt: pj.QCAt, Outcome: pj.Outcome, FeeTight: pj.FeeTight}
		for _, f := range []struct {
			dst   []byte
			s     string
			field string
		}{{p.TxHash[:], pj.TxHash, "tx_hash"}, {p.ChainTx[:], pj.ChainTx, "chain_tx"}, {p.Sender[:], pj.Sender, "sender"}, {p.ParentTx[:], pj.ParentTx, "parent_tx"}} {
			if f.s == "" {
				continue
			}
			if err := parseFixed(f.dst, f.s, fmt.Sprintf("payments[%d].%s", i, f.field)); err != nil {
				return err
			}
		}
		if fj := pj.Fee; fj != nil {
			f, err := fj.fee(fmt.Sprintf("payments[%d].fee", i))
			if err != nil {
				return err
			}
			p.Fee = f
		}
		out.Payments[i] = p
	}
	*r = out
	return nil
}

func (fj *paymentFeeJSON) fee(field string) (*PaymentFee, error) {
	f := &PaymentFee{ValidBefore: uint64(fj.ValidBefore), ValidAfter: uint64(fj.ValidAfter)}
	var err error
	if f.Payer, err = apiserver.ParseAddress(fj.Payer); err != nil {
		return nil, fmt.Errorf("%s.payer: %w", field, err)
	}
	if f.Token, err = apiserver.ParseAddress(fj.Token); err != nil {
		return nil, fmt.Errorf("%s.token: %w", field, err)
	}
	n, ok := new(big.Int).SetString(fj.Max, 10)
	if !ok || n.Sign() < 0 {
		return nil, fmt.Errorf("%s.max: %q is not a non-negative decimal amount", field, fj.Max)
	}
	f.Max = n
	return f, nil
}

// WriteJSON writes r as indented JSON.
func (r *Run) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("safety: encode run: %w", err)
	}
	return nil
}

// WriteFile stores r as JSON at path.
func (r *Run) WriteFile(path string) error {
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("safety: write run: %w", err)
	}
	return nil
}

// ReadRun decodes a run written by WriteJSON.
func ReadRun(rd io.Reader) (*Run, error) {
	r := new(Run)
	if err := json.NewDecoder(rd).Decode(r); err != nil {
		return nil, fmt.Errorf("safety: decode run: %w", err)
	}
	return r, nil
}

// ReadRunFile reads a run file written by WriteFile.
func ReadRunFile(path string) (*Run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safety: read run: %w", err)
	}
	defer f.Close()
	r, err := ReadRun(f)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return r, nil
}

// CheckFiles re-checks a stored history, with the stored run when runPath
// is not empty (the body of an offline `safety-check` command).
func CheckFiles(historyPath, runPath string) (*Report, error) {
	h, err := ReadHistoryFile(historyPath)
	if err != nil {
		return nil, err
	}
	var run *Run
	if runPath != "" {
		if run, err = ReadRunFile(runPath); err != nil {
			return nil, err
		}
	}
	return Check(h, run), nil
}
