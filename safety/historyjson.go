package safety

// The JSON form of a History: hashes, ids and bytes as 0x hex, u64 values
// and balances as decimal strings, certificates and QCs in the sidecar API's
// JSON encoding (docs/api.md), so a history file reads like the API.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"time"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/qc"
)

// historyVersion is the version of the JSON form. Fields added since it
// was fixed (the committees of other epochs, seats, the epochs QCs carry)
// are optional, so files written before them read as before.
const historyVersion = 1

type historyJSON struct {
	Version         int                  `json:"version"`
	CollectedAt     time.Time            `json:"collected_at"`
	Committee       committeeJSON        `json:"committee"`
	Epochs          []committeeJSON      `json:"epochs,omitempty"`
	Token           string               `json:"token"`
	Sources         []sourceJSON         `json:"sources"`
	Certificates    []certRecordJSON     `json:"certificates"`
	QCs             []qcRecordJSON       `json:"qcs"`
	Evidence        []evidenceRecordJSON `json:"evidence"`
	LightClientQCs  []lightClientQCJSON  `json:"light_client_qcs"`
	Txs             []txRecordJSON       `json:"txs"`
	InitialBalances map[string]string    `json:"initial_balances"`
	// InitialFeeBalances: fee token -> account -> decimal amount (the
	// native currency as the zero address).
	InitialFeeBalances map[string]map[string]string `json:"initial_fee_balances,omitempty"`
	ChainNonces        map[string]apiserver.U64     `json:"chain_nonces,omitempty"`
	ChainIncluded      map[string]apiserver.U64     `json:"chain_included,omitempty"`
}

type committeeJSON struct {
	ChainID apiserver.U64 `json:"chain_id"`
	Epoch   apiserver.U64 `json:"epoch"`
	Members []memberJSON  `json:"members"`
	Seats   []string      `json:"seats,omitempty"`
	// SettlementMarginMillis is omitted when not recorded.
	SettlementMarginMillis apiserver.U64 `json:"settlement_margin_ms,omitempty"`
}

type memberJSON struct {
	Name   string `json:"name"`
	ID     string `json:"id"`
	Seat   string `json:"seat,omitempty"`
	Honest bool   `json:"honest"`
}

type sourceJSON struct {
	Name        string    `json:"name"`
	Kind        string    `json:"kind"`
	URL         string    `json:"url,omitempty"`
	Honest      bool      `json:"honest"`
	ID          string    `json:"id,omitempty"`
	Reachable   bool      `json:"reachable"`
	CollectedAt time.Time `json:"collected_at"`
	Errors      []string  `json:"errors,omitempty"`
	ErrorCount  int       `json:"error_count,omitempty"`
	Pages       int       `json:"pages"`
	Certs       int       `json:"certificates"`
	QCs         int       `json:"qcs"`
	Evidence    int       `json:"evidence"`
	Statuses    int       `json:"statuses"`
}

type certRecordJSON struct {
	Cert   apiserver.JSONCertificate `json:"certificate"`
	SeenBy []string                  `json:"seen_by"`
}

type qcRecordJSON struct {
	QC apiserver.JSONQC `json:"qc"`
	// Epoch is the epoch the QC carries (QuorumCertificate field 6), which
	// the API's JSON form leaves out; omitted when not carried.
	Epoch  apiserver.U64 `json:"epoch,omitempty"`
	SeenBy []string      `json:"seen_by"`
}

type evidenceRecordJSON struct {
	First      apiserver.JSONCertificate `json:"first"`
	Second     apiserver.JSONCertificate `json:"second"`
	ReportedBy []string                  `json:"reported_by"`
}

type lightClientQCJSON struct {
	Client   string `json:"client"`
	ProtoHex string `json:"proto_hex"`
}

type txRecordJSON struct {
	TxHash   string       `json:"tx_hash"`
	Statuses []statusJSON `json:"statuses"`
}

type statusJSON struct {
	Node                string        `json:"node"`
	Stage               string        `json:"stage"`
	BlockHeight         apiserver.U64 `json:"block_height"`
	CertCount           int           `json:"cert_count"`
	QCHash              string        `json:"qc_hash,omitempty"`
	QCUnixMillis        apiserver.U64 `json:"qc_unix_millis,omitempty"`
	FirstSeenUnixMillis apiserver.U64 `json:"first_seen_unix_millis,omitempty"`
}

func hexOf(b []byte) string { return apiserver.Hex0x(b) }

// parseBalance reads one entry of a balance map: an address and a
// non-negative decimal amount.
func parseBalance(field, a, v string) (qc.Address, *big.Int, error) {
	addr, err := apiserver.ParseAddress(a)
	if err != nil {
		return qc.Address{}, nil, fmt.Errorf("%s: %w", field, err)
	}
	n, ok := new(big.Int).SetString(v, 10)
	if !ok || n.Sign() < 0 {
		return qc.Address{}, nil, fmt.Errorf("%s[%s]: %q is not a non-negative decimal amount", field, a, v)
	}
	return addr, n, nil
}

func parseFixed(dst []byte, s, field string) error {
	b, err := apiserver.ParseHex(s)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if len(b) != len(dst) {
		return fmt.Errorf("%s: must be %d bytes, got %d", field, len(dst), len(b))
	}
	copy(dst, b)
	return nil
}

func committeeToJSON(c CommitteeInfo) committeeJSON {
	j := committeeJSON{ChainID: apiserver.U64(c.ChainID), Epoch: apiserver.U64(c.Epoch),
		Members: make([]memberJSON, len(c.Members)), SettlementMarginMillis: apiserver.U64(c.SettlementMargin.Milliseconds())}
	for i, m := range c.Members {
		j.Members[i] = memberJSON{Name: m.Name, ID: m.ID.Hex(), Honest: m.Honest}
		if m.Seat != (qc.ValidatorID{}) {
			j.Members[i].Seat = m.Seat.Hex()
		}
	}
	for _, seat := range c.Seats {
		j.Seats = append(j.Seats, seat.Hex())
	}
	return j
}

func committeeFromJSON(j committeeJSON, field string) (CommitteeInfo, error) {
	c := CommitteeInfo{ChainID: uint64(j.ChainID), Epoch: uint64(j.Epoch),
		SettlementMargin: time.Duration(min(uint64(j.SettlementMarginMillis), math.MaxInt64/uint64(time.Millisecond))) * time.Millisecond}
	for i, m := range j.Members {
		mi := MemberInfo{Name: m.Name, Honest: m.Honest}
		if err := parseFixed(mi.ID[:], m.ID, fmt.Sprintf("%s.members[%d].id", field, i)); err != nil {
			return CommitteeInfo{}, err
		}
		if m.Seat != "" {
			if err := parseFixed(mi.Seat[:], m.Seat, fmt.Sprintf("%s.members[%d].seat", field, i)); err != nil {
				return CommitteeInfo{}, err
			}
		}
		c.Members = append(c.Members, mi)
	}
	for i, seat := range j.Seats {
		var id qc.ValidatorID
		if err := parseFixed(id[:], seat, fmt.Sprintf("%s.seats[%d]", field, i)); err != nil {
			return CommitteeInfo{}, err
		}
		c.Seats = append(c.Seats, id)
	}
	return c, nil
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// MarshalJSON encodes h in its JSON form.
func (h *History) MarshalJSON() ([]byte, error) {
	j := historyJSON{
		Version: historyVersion, CollectedAt: h.CollectedAt, Token: hexOf(h.Token[:]),
		Committee: committeeToJSON(h.Committee),
		Sources:   make([]sourceJSON, len(h.Sources)), Certificates: make([]certRecordJSON, len(h.Certificates)),
		QCs: make([]qcRecordJSON, len(h.QCs)), Evidence: make([]evidenceRecordJSON, len(h.Evidence)),
		LightClientQCs: make([]lightClientQCJSON, len(h.LightClientQCs)), Txs: make([]txRecordJSON, len(h.Txs)),
		InitialBalances: make(map[string]string, len(h.InitialBalances)),
	}
	for _, c := range h.Epochs {
		j.Epochs = append(j.Epochs, committeeToJSON(c))
	}
	for i, s := range h.Sources {
		sj := sourceJSON{Name: s.Name, Kind: s.Kind, URL: s.URL, Honest: s.Honest, Reachable: s.Reachable,
			CollectedAt: s.CollectedAt, Errors: s.Errors, ErrorCount: s.ErrorCount, Pages: s.Pages, Certs: s.Certs,
			QCs: s.QCs, Evidence: s.Evidence, Statuses: s.Statuses}
		if s.ID != (qc.ValidatorID{}) {
			sj.ID = s.ID.Hex()
		}
		j.Sources[i] = sj
	}
	for i := range h.Certificates {
		r := &h.Certificates[i]
		j.Certificates[i] = certRecordJSON{Cert: apiserver.NewJSONCertificate(&r.Cert), SeenBy: orEmpty(r.SeenBy)}
	}
	for i, r := range h.QCs {
		jq := apiserver.NewJSONQC(r.QC)
		jq.ProtoHex = "" // the JSON fields say it all
		j.QCs[i] = qcRecordJSON{QC: jq, Epoch: apiserver.U64(r.QC.Epoch), SeenBy: orEmpty(r.SeenBy)}
	}
	for i := range h.Evidence {
		r := &h.Evidence[i]
		j.Evidence[i] = evidenceRecordJSON{First: apiserver.NewJSONCertificate(&r.Evidence.First),
			Second: apiserver.NewJSONCertificate(&r.Evidence.Second), ReportedBy: orEmpty(r.ReportedBy)}
	}
	for i, l := range h.LightClientQCs {
		j.LightClientQCs[i] = lightClientQCJSON{Client: l.Client, ProtoHex: hexOf(l.Raw)}
	}
	for i, t := range h.Txs {
		tj := txRecordJSON{TxHash: t.TxHash.Hex(), Statuses: make([]statusJSON, len(t.Statuses))}
		for k, st := range t.Statuses {
			sj := statusJSON{Node: st.Node, Stage: st.Stage, BlockHeight: apiserver.U64(st.BlockHeight), CertCount: st.CertCount,
				QCUnixMillis: apiserver.U64(st.QCUnixMillis), FirstSeenUnixMillis: apiserver.U64(st.FirstSeenUnixMillis)}
			if !st.QCHash.IsZero() {
				sj.QCHash = st.QCHash.Hex()
			}
			tj.Statuses[k] = sj
		}
		j.Txs[i] = tj
	}
	for a, b := range h.InitialBalances {
		j.InitialBalances[a.Hex()] = b.String()
	}
	if len(h.InitialFeeBalances) > 0 {
		j.InitialFeeBalances = make(map[string]map[string]string, len(h.InitialFeeBalances))
		for token, m := range h.InitialFeeBalances {
			jm := make(map[string]string, len(m))
			for a, b := range m {
				jm[a.Hex()] = b.String()
			}
			j.InitialFeeBalances[token.Hex()] = jm
		}
	}
	if len(h.ChainIncluded) > 0 {
		j.ChainIncluded = make(map[string]apiserver.U64, len(h.ChainIncluded))
		for tx, block := range h.ChainIncluded {
			j.ChainIncluded[tx.Hex()] = apiserver.U64(block)
		}
	}
	if len(h.ChainNonces) > 0 {
		j.ChainNonces = make(map[string]apiserver.U64, len(h.ChainNonces))
		for a, n := range h.ChainNonces {
			j.ChainNonces[a.Hex()] = apiserver.U64(n)
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes the JSON form written by MarshalJSON.
func (h *History) UnmarshalJSON(b []byte) error {
	var j historyJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	if j.Version != historyVersion {
		return fmt.Errorf("history version %d is not supported (want %d)", j.Version, historyVersion)
	}
	committee, err := committeeFromJSON(j.Committee, "committee")
	if err != nil {
		return err
	}
	out := History{CollectedAt: j.CollectedAt, Committee: committee}
	for i := range j.Epochs {
		c, err := committeeFromJSON(j.Epochs[i], fmt.Sprintf("epochs[%d]", i))
		if err != nil {
			return err
		}
		out.Epochs = append(out.Epochs, c)
	}
	if err := parseFixed(out.Token[:], j.Token, "token"); err != nil {
		return err
	}
	for i, s := range j.Sources {
		src := Source{Name: s.Name, Kind: s.Kind, URL: s.URL, Honest: s.Honest, Reachable: s.Reachable,
			CollectedAt: s.CollectedAt, Errors: s.Errors, ErrorCount: s.ErrorCount, Pages: s.Pages, Certs: s.Certs,
			QCs: s.QCs, Evidence: s.Evidence, Statuses: s.Statuses}
		if s.ID != "" {
			if err := parseFixed(src.ID[:], s.ID, fmt.Sprintf("sources[%d].id", i)); err != nil {
				return err
			}
		}
		out.Sources = append(out.Sources, src)
	}
	for i := range j.Certificates {
		c, err := j.Certificates[i].Cert.ToCertificate(fmt.Sprintf("certificates[%d].certificate", i))
		if err != nil {
			return err
		}
		out.Certificates = append(out.Certificates, CertRecord{Cert: c, SeenBy: j.Certificates[i].SeenBy})
	}
	for i := range j.QCs {
		q, err := j.QCs[i].QC.ToQC(fmt.Sprintf("qcs[%d].qc", i))
		if err != nil {
			return err
		}
		q.Epoch = uint64(j.QCs[i].Epoch)
		out.QCs = append(out.QCs, QCRecord{QC: q, SeenBy: j.QCs[i].SeenBy})
	}
	for i := range j.Evidence {
		first, err := j.Evidence[i].First.ToCertificate(fmt.Sprintf("evidence[%d].first", i))
		if err != nil {
			return err
		}
		second, err := j.Evidence[i].Second.ToCertificate(fmt.Sprintf("evidence[%d].second", i))
		if err != nil {
			return err
		}
		out.Evidence = append(out.Evidence, EvidenceRecord{Evidence: qc.Equivocation{First: first, Second: second}, ReportedBy: j.Evidence[i].ReportedBy})
	}
	for i, l := range j.LightClientQCs {
		raw, err := apiserver.ParseHex(l.ProtoHex)
		if err != nil {
			return fmt.Errorf("light_client_qcs[%d].proto_hex: %w", i, err)
		}
		out.LightClientQCs = append(out.LightClientQCs, LightClientQC{Client: l.Client, Raw: raw})
	}
	for i, t := range j.Txs {
		var rec TxRecord
		if err := parseFixed(rec.TxHash[:], t.TxHash, fmt.Sprintf("txs[%d].tx_hash", i)); err != nil {
			return err
		}
		for k, s := range t.Statuses {
			st := NodeStatus{Node: s.Node, Stage: s.Stage, BlockHeight: uint64(s.BlockHeight), CertCount: s.CertCount,
				QCUnixMillis: uint64(s.QCUnixMillis), FirstSeenUnixMillis: uint64(s.FirstSeenUnixMillis)}
			if s.QCHash != "" {
				if err := parseFixed(st.QCHash[:], s.QCHash, fmt.Sprintf("txs[%d].statuses[%d].qc_hash", i, k)); err != nil {
					return err
				}
			}
			rec.Statuses = append(rec.Statuses, st)
		}
		out.Txs = append(out.Txs, rec)
	}
	if len(j.InitialBalances) > 0 {
		out.InitialBalances = make(map[qc.Address]*big.Int, len(j.InitialBalances))
		for a, v := range j.InitialBalances {
			addr, n, err := parseBalance("initial_balances", a, v)
			if err != nil {
				return err
			}
			out.InitialBalances[addr] = n
		}
	}
	for t, m := range j.InitialFeeBalances {
		token, err := apiserver.ParseAddress(t)
		if err != nil {
			return fmt.Errorf("initial_fee_balances: %w", err)
		}
		for a, v := range m {
			addr, n, err := parseBalance("initial_fee_balances["+t+"]", a, v)
			if err != nil {
				return err
			}
			out.setInitialFeeBalance(token, addr, n)
		}
	}
	if len(j.ChainIncluded) > 0 {
		out.ChainIncluded = make(map[qc.Hash]uint64, len(j.ChainIncluded))
		for s, block := range j.ChainIncluded {
			var tx qc.Hash
			if err := parseFixed(tx[:], s, "chain_included"); err != nil {
				return err
			}
			out.ChainIncluded[tx] = uint64(block)
		}
	}
	if len(j.ChainNonces) > 0 {
		out.ChainNonces = make(map[qc.Address]uint64, len(j.ChainNonces))
		for a, n := range j.ChainNonces {
			addr, err := apiserver.ParseAddress(a)
			if err != nil {
				return fmt.Errorf("chain_nonces: %w", err)
			}
			out.ChainNonces[addr] = uint64(n)
		}
	}
	*h = out
	return nil
}
