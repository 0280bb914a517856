package safety

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"os"
	"slices"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// Kinds of Source.
const (
	SourceSidecar     = "sidecar"     // a validator's HTTP API
	SourceLightClient = "lightclient" // QCs a light client accepted
	SourceObserver    = "observer"    // what a test driver saw itself (for example the QCs its payments got)
)

// maxSourceErrors bounds the errors kept per source.
const maxSourceErrors = 20

// History is everything gathered after a run: every certificate, QC and
// piece of equivocation evidence the sidecars served, the QCs light clients
// accepted, per-node settlement stages and the accounts' initial balances.
// It serialises to JSON (WriteJSON, ReadHistory) so a run can be re-checked
// offline. Build one with Collect, or with NewHistory and the Add methods;
// a History is not safe for concurrent use.
type History struct {
	CollectedAt time.Time
	// Committee is the committee of the network's committee file, or of
	// one epoch of a run that spanned several.
	Committee CommitteeInfo
	// Epochs are the committees of the run's other epochs (SPEC §5a), each
	// of Committee's chain and its own epoch; empty for a run within one
	// epoch. Their SettlementMargin is not used (it is Committee's).
	Epochs []CommitteeInfo
	// Token is the asset InitialBalances are denominated in.
	Token           qc.Address
	Sources         []Source
	Certificates    []CertRecord
	QCs             []QCRecord
	Evidence        []EvidenceRecord
	LightClientQCs  []LightClientQC
	Txs             []TxRecord
	InitialBalances map[qc.Address]*big.Int
	// InitialFeeBalances are the initial balances of fee tokens other than
	// Token, per fee token (NativeToken for the native currency) and
	// account (CollectConfig.InitialFeeBalances).
	InitialFeeBalances map[qc.Address]map[qc.Address]*big.Int
	// ChainNonces are the chain's next nonces (nonce key 0) of the senders
	// of certified payments when the history was collected.
	ChainNonces map[qc.Address]uint64
	// ChainIncluded are the transactions of CollectConfig.ChainTxs the
	// chain holds with a successful receipt, by chain hash, with their
	// block.
	ChainIncluded map[qc.Hash]uint64

	idx *historyIndex
}

// CommitteeInfo is one epoch's committee a History is checked against.
type CommitteeInfo struct {
	ChainID uint64
	Epoch   uint64
	Members []MemberInfo
	// Seats are the committee's votes (consensus keys) when members sign
	// for seats other than their own keys, as in a committee derived from
	// the chain; empty when every member is its own seat (a committee
	// file's).
	Seats []qc.ValidatorID
	// SettlementMargin is the network's settlement margin (the committee
	// file's settlement_margin, its default when unset): validators
	// certify a 0x76 transaction only while its valid_before is at least
	// this far ahead and its valid_after at most this far. Zero when not
	// recorded (histories stored before it was): Check then uses the
	// default.
	SettlementMargin time.Duration
}

// MemberInfo is one committee member (a signing key) and whether it was
// run honestly.
type MemberInfo struct {
	Name string
	ID   qc.ValidatorID
	// Seat is the consensus key the member signs for; zero when it is its
	// own seat.
	Seat   qc.ValidatorID
	Honest bool
}

// SeatOrID returns the member's seat, which is its ID unless set.
func (m MemberInfo) SeatOrID() qc.ValidatorID {
	if m.Seat == (qc.ValidatorID{}) {
		return m.ID
	}
	return m.Seat
}

// Source is one place data was gathered from, with what it gave.
type Source struct {
	Name        string
	Kind        string // SourceSidecar, SourceLightClient or SourceObserver
	URL         string
	Honest      bool
	ID          qc.ValidatorID // the validator id the sidecar reported (zero if unknown)
	Reachable   bool
	CollectedAt time.Time
	Errors      []string // the first errors met (at most 20)
	ErrorCount  int
	Pages       int // bulletin pages read
	Certs       int // certificates served
	QCs         int // QCs served
	Evidence    int // evidence records served
	Statuses    int // transaction statuses served
}

// CertRecord is one distinct certificate (signer, tx, effects, signature)
// and the sources that served it.
type CertRecord struct {
	Cert   qc.Certificate
	SeenBy []string
}

// QCRecord is one distinct QC and the sources that served it.
type QCRecord struct {
	QC     *qc.QC
	SeenBy []string
}

// EvidenceRecord is one distinct piece of equivocation evidence and the
// sources that reported it.
type EvidenceRecord struct {
	Evidence   qc.Equivocation
	ReportedBy []string
}

// LightClientQC is one QC, as raw protobuf bytes, that a light client
// accepted.
type LightClientQC struct {
	Client string
	Raw    []byte
}

// TxRecord is what the sidecars reported of one transaction.
type TxRecord struct {
	TxHash   qc.Hash
	Statuses []NodeStatus
}

// NodeStatus is one sidecar's GET /api/v1/tx/{hash}/status answer.
type NodeStatus struct {
	Node        string
	Stage       string // TxLifecycleUpdate stage name, e.g. "FINALIZED"
	BlockHeight uint64
	CertCount   int
	QCHash      qc.Hash // zero when the node holds no QC
	// QCUnixMillis is when the node got the QC (its clock), 0 if none.
	QCUnixMillis        uint64
	FirstSeenUnixMillis uint64
}

// NewHistory returns an empty history for a committee.
func NewHistory(committee CommitteeInfo, token qc.Address) *History {
	return &History{CollectedAt: time.Now().UTC(), Committee: committee, Token: token}
}

// QCommittee builds the protocol committee of h.Committee.
func (h *History) QCommittee() (*qc.Committee, error) {
	c, err := h.Committee.QCommittee()
	if err != nil {
		return nil, fmt.Errorf("safety: history committee: %w", err)
	}
	return c, nil
}

// CommitteeInfos returns h.Committee followed by h.Epochs.
func (h *History) CommitteeInfos() []CommitteeInfo {
	return append([]CommitteeInfo{h.Committee}, h.Epochs...)
}

// QCommittees builds the protocol committees of every epoch of h.
func (h *History) QCommittees() (*Committees, error) {
	infos := h.CommitteeInfos()
	cs := make([]*qc.Committee, len(infos))
	for i, info := range infos {
		c, err := info.QCommittee()
		if err != nil {
			return nil, fmt.Errorf("safety: history committee of epoch %d: %w", info.Epoch, err)
		}
		cs[i] = c
	}
	s, err := NewCommittees(cs...)
	if err != nil {
		return nil, fmt.Errorf("safety: history: %w", err)
	}
	return s, nil
}

// QCommittee builds the protocol committee c describes.
func (c CommitteeInfo) QCommittee() (*qc.Committee, error) {
	members := make([]qc.Member, len(c.Members))
	for i, m := range c.Members {
		members[i] = qc.Member{Name: m.Name, ID: m.ID, Seat: m.Seat}
	}
	domain := qc.Domain{ChainID: c.ChainID, Epoch: c.Epoch}
	if len(c.Seats) == 0 {
		return qc.NewCommittee(domain, members)
	}
	return qc.NewSeatedCommittee(domain, c.Seats, members)
}

// NewCommitteeInfo describes committee c with every member honest.
func NewCommitteeInfo(c *qc.Committee) CommitteeInfo {
	d := c.Domain()
	info := CommitteeInfo{ChainID: d.ChainID, Epoch: d.Epoch}
	for _, m := range c.Members() {
		info.Members = append(info.Members, MemberInfo{Name: m.Name, ID: m.ID, Seat: m.Seat, Honest: true})
	}
	if c.Seated() {
		info.Seats = slices.Clone(c.Seats())
	}
	return info
}

type certKey struct {
	signer      qc.ValidatorID
	tx, effects qc.Hash
	sig         [qc.SignatureSize]byte
}

type evidenceKey struct {
	signer qc.ValidatorID
	a, b   [2]qc.Hash // (tx, effects) of each certificate, a ≤ b
	sigA   [qc.SignatureSize]byte
	sigB   [qc.SignatureSize]byte
}

type lightKey struct {
	client string
	digest qc.Hash
}

type historyIndex struct {
	certs    map[certKey]int
	qcs      map[qc.Hash]int // content digest
	evidence map[evidenceKey]int
	light    map[lightKey]bool
	txs      map[qc.Hash]int
}

// index returns the lookup tables, rebuilding them after decoding.
func (h *History) index() *historyIndex {
	if h.idx != nil {
		return h.idx
	}
	x := &historyIndex{
		certs: make(map[certKey]int, len(h.Certificates)), qcs: make(map[qc.Hash]int, len(h.QCs)),
		evidence: make(map[evidenceKey]int, len(h.Evidence)), light: make(map[lightKey]bool, len(h.LightClientQCs)),
		txs: make(map[qc.Hash]int, len(h.Txs)),
	}
	for i := range h.Certificates {
		x.certs[certKeyOf(&h.Certificates[i].Cert)] = i
	}
	for i := range h.QCs {
		x.qcs[qcDigest(h.QCs[i].QC)] = i
	}
	for i := range h.Evidence {
		x.evidence[evidenceKeyOf(&h.Evidence[i].Evidence)] = i
	}
	for _, l := range h.LightClientQCs {
		x.light[lightKey{l.Client, sha256.Sum256(l.Raw)}] = true
	}
	for i := range h.Txs {
		x.txs[h.Txs[i].TxHash] = i
	}
	h.idx = x
	return x
}

func certKeyOf(c *qc.Certificate) certKey {
	return certKey{signer: c.Signer, tx: c.TxHash, effects: c.EffectsHash, sig: c.Signature}
}

func evidenceKeyOf(e *qc.Equivocation) evidenceKey {
	a, b := [2]qc.Hash{e.First.TxHash, e.First.EffectsHash}, [2]qc.Hash{e.Second.TxHash, e.Second.EffectsHash}
	sa, sb := e.First.Signature, e.Second.Signature
	if bytes.Compare(append(a[0][:], a[1][:]...), append(b[0][:], b[1][:]...)) > 0 {
		a, b, sa, sb = b, a, sb, sa
	}
	return evidenceKey{signer: e.First.Signer, a: a, b: b, sigA: sa, sigB: sb}
}

// qcDigest identifies a QC by its whole content (not only its carried
// qc_hash, which a forger could copy).
func qcDigest(q *qc.QC) qc.Hash {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(fastpayv1.NewQuorumCertificate(q))
	if err != nil {
		return q.Hash
	}
	return sha256.Sum256(b)
}

func addName(list []string, name string) []string {
	if name == "" || slices.Contains(list, name) {
		return list
	}
	list = append(list, name)
	sort.Strings(list)
	return list
}

// AddCertificate records a certificate served by source.
func (h *History) AddCertificate(source string, c qc.Certificate) {
	x := h.index()
	k := certKeyOf(&c)
	if i, ok := x.certs[k]; ok {
		h.Certificates[i].SeenBy = addName(h.Certificates[i].SeenBy, source)
		return
	}
	x.certs[k] = len(h.Certificates)
	h.Certificates = append(h.Certificates, CertRecord{Cert: c, SeenBy: addName(nil, source)})
}

// AddQC records a QC served by source.
func (h *History) AddQC(source string, q *qc.QC) {
	if q == nil {
		return
	}
	x := h.index()
	d := qcDigest(q)
	if i, ok := x.qcs[d]; ok {
		h.QCs[i].SeenBy = addName(h.QCs[i].SeenBy, source)
		return
	}
	x.qcs[d] = len(h.QCs)
	h.QCs = append(h.QCs, QCRecord{QC: q, SeenBy: addName(nil, source)})
}

// AddEvidence records equivocation evidence reported by source.
func (h *History) AddEvidence(source string, e qc.Equivocation) {
	x := h.index()
	k := evidenceKeyOf(&e)
	if i, ok := x.evidence[k]; ok {
		h.Evidence[i].ReportedBy = addName(h.Evidence[i].ReportedBy, source)
		return
	}
	x.evidence[k] = len(h.Evidence)
	h.Evidence = append(h.Evidence, EvidenceRecord{Evidence: e, ReportedBy: addName(nil, source)})
}

// AddLightClientQC records raw QC bytes a light client accepted.
func (h *History) AddLightClientQC(client string, raw []byte) {
	x := h.index()
	k := lightKey{client, sha256.Sum256(raw)}
	if x.light[k] {
		return
	}
	x.light[k] = true
	h.LightClientQCs = append(h.LightClientQCs, LightClientQC{Client: client, Raw: slices.Clone(raw)})
}

// AddStatus records one node's status of txHash (a zero NodeStatus only
// registers the transaction).
func (h *History) AddStatus(txHash qc.Hash, st NodeStatus) {
	x := h.index()
	i, ok := x.txs[txHash]
	if !ok {
		i = len(h.Txs)
		x.txs[txHash] = i
		h.Txs = append(h.Txs, TxRecord{TxHash: txHash})
	}
	if st == (NodeStatus{}) || slices.Contains(h.Txs[i].Statuses, st) {
		return
	}
	h.Txs[i].Statuses = append(h.Txs[i].Statuses, st)
}

// AddSource records where data came from.
func (h *History) AddSource(s Source) { h.Sources = append(h.Sources, s) }

// Merge adds everything in o to h: use it to combine collections made at
// several points of a run (a sidecar's board does not survive its restart,
// so collecting before each restart keeps what it held). Both must be for
// the same committee.
func (h *History) Merge(o *History) error {
	if o == nil {
		return nil
	}
	if !sameCommittee(h.Committee, o.Committee) {
		return fmt.Errorf("safety: merge: histories are for different committees")
	}
	// Committees of other epochs join (one per epoch; a different one for
	// an epoch already known is an error, checked before anything merges).
	var epochs []CommitteeInfo
	for _, oc := range o.Epochs {
		known := false
		for _, hc := range h.CommitteeInfos() {
			if hc.Epoch != oc.Epoch {
				continue
			}
			if !sameCommittee(hc, oc) {
				return fmt.Errorf("safety: merge: histories have different committees of epoch %d", oc.Epoch)
			}
			known = true
		}
		if !known {
			epochs = append(epochs, oc)
		}
	}
	h.Epochs = append(h.Epochs, epochs...)
	for _, s := range o.Sources {
		h.AddSource(s)
	}
	for _, r := range o.Certificates {
		for _, src := range r.SeenBy {
			h.AddCertificate(src, r.Cert)
		}
	}
	for _, r := range o.QCs {
		for _, src := range r.SeenBy {
			h.AddQC(src, r.QC)
		}
	}
	for _, r := range o.Evidence {
		for _, src := range r.ReportedBy {
			h.AddEvidence(src, r.Evidence)
		}
	}
	for _, l := range o.LightClientQCs {
		h.AddLightClientQC(l.Client, l.Raw)
	}
	for _, t := range o.Txs {
		h.AddStatus(t.TxHash, NodeStatus{})
		for _, st := range t.Statuses {
			h.AddStatus(t.TxHash, st)
		}
	}
	for a, b := range o.InitialBalances {
		if h.InitialBalances == nil {
			h.InitialBalances = make(map[qc.Address]*big.Int)
		}
		if _, ok := h.InitialBalances[a]; !ok {
			h.InitialBalances[a] = new(big.Int).Set(b)
		}
	}
	for token, m := range o.InitialFeeBalances {
		for a, b := range m {
			h.setInitialFeeBalance(token, a, b)
		}
	}
	if h.Committee.SettlementMargin == 0 {
		h.Committee.SettlementMargin = o.Committee.SettlementMargin
	}
	for a, n := range o.ChainNonces {
		if h.ChainNonces == nil {
			h.ChainNonces = make(map[qc.Address]uint64)
		}
		h.ChainNonces[a] = max(h.ChainNonces[a], n)
	}
	for tx, block := range o.ChainIncluded {
		if h.ChainIncluded == nil {
			h.ChainIncluded = make(map[qc.Hash]uint64)
		}
		h.ChainIncluded[tx] = block
	}
	if o.CollectedAt.After(h.CollectedAt) {
		h.CollectedAt = o.CollectedAt
	}
	return nil
}

// setInitialFeeBalance records account's initial balance of a fee token
// unless one is recorded already.
func (h *History) setInitialFeeBalance(token, account qc.Address, b *big.Int) {
	if h.InitialFeeBalances == nil {
		h.InitialFeeBalances = make(map[qc.Address]map[qc.Address]*big.Int)
	}
	m := h.InitialFeeBalances[token]
	if m == nil {
		m = make(map[qc.Address]*big.Int)
		h.InitialFeeBalances[token] = m
	}
	if _, ok := m[account]; !ok {
		m[account] = new(big.Int).Set(b)
	}
}

// initialBalance returns account's recorded initial balance of token.
func (h *History) initialBalance(account, token qc.Address) (*big.Int, bool) {
	if token == h.Token {
		if b, ok := h.InitialBalances[account]; ok {
			return b, true
		}
	}
	b, ok := h.InitialFeeBalances[token][account]
	return b, ok
}

func sameCommittee(a, b CommitteeInfo) bool {
	if a.ChainID != b.ChainID || a.Epoch != b.Epoch || len(a.Members) != len(b.Members) || !slices.Equal(a.Seats, b.Seats) {
		return false
	}
	for i := range a.Members {
		if a.Members[i] != b.Members[i] {
			return false
		}
	}
	return true
}

// WriteFile stores h as indented JSON at path.
func (h *History) WriteFile(path string) error {
	var buf bytes.Buffer
	if err := h.WriteJSON(&buf); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("safety: write history: %w", err)
	}
	return nil
}

// WriteJSON writes h as indented JSON.
func (h *History) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(h); err != nil {
		return fmt.Errorf("safety: encode history: %w", err)
	}
	return nil
}

// ReadHistory decodes a history written by WriteJSON.
func ReadHistory(r io.Reader) (*History, error) {
	dec := json.NewDecoder(r)
	h := new(History)
	if err := dec.Decode(h); err != nil {
		return nil, fmt.Errorf("safety: decode history: %w", err)
	}
	return h, nil
}

// ReadHistoryFile reads a history file written by WriteFile.
func ReadHistoryFile(path string) (*History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safety: read history: %w", err)
	}
	defer f.Close()
	h, err := ReadHistory(f)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return h, nil
}
