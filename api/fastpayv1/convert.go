package fastpayv1

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/allegro-mesh/allegro/qc"
)

// ErrInvalidMessage is wrapped by every conversion failure of untrusted wire
// data into domain types.
var ErrInvalidMessage = errors.New("invalid message")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidMessage, fmt.Sprintf(format, args...))
}

func fixedBytes(dst []byte, src []byte, field string) error {
	if len(src) != len(dst) {
		return invalid("%s must be %d bytes, got %d", field, len(dst), len(src))
	}
	copy(dst, src)
	return nil
}

// ToAddress returns the 20-byte address carried by a.
func (a *Address) ToAddress(field string) (qc.Address, error) {
	return rawAddressOf(a.GetData(), a != nil).toAddress(field)
}

// ToAddress returns the 20-byte token address carried by a.
func (a *AssetId) ToAddress(field string) (qc.Address, error) {
	return rawAddressOf(a.GetData(), a != nil).toAddress(field)
}

// NewAddress wraps a domain address.
func NewAddress(a qc.Address) *Address { return &Address{Data: a[:]} }

// NewAssetId wraps a token address.
func NewAssetId(a qc.Address) *AssetId { return &AssetId{Data: a[:]} }

// ToNonce returns the nonce key and sequence carried by n.
func (n *Nonce2D) ToNonce(field string) (qc.NonceKey, uint64, error) {
	return rawNonceOf(n).toNonce(field)
}

// ToExpiry converts e; a missing or empty expiry is an error.
func (e *Expiry) ToExpiry() (qc.Expiry, error) {
	switch k := e.GetKind().(type) {
	case *Expiry_MaxBlockHeight:
		return qc.Expiry{Kind: qc.ExpiryMaxBlockHeight, Value: k.MaxBlockHeight}, nil
	case *Expiry_UnixMillis:
		return qc.Expiry{Kind: qc.ExpiryUnixMillis, Value: k.UnixMillis}, nil
	default:
		return qc.Expiry{}, invalid("expiry is missing: set max_block_height or unix_millis")
	}
}

// NewExpiry wraps a domain expiry.
func NewExpiry(e qc.Expiry) *Expiry {
	if e.Kind == qc.ExpiryUnixMillis {
		return &Expiry{Kind: &Expiry_UnixMillis{UnixMillis: e.Value}}
	}
	return &Expiry{Kind: &Expiry_MaxBlockHeight{MaxBlockHeight: e.Value}}
}

// TxHashInput extracts what tx_hash commits to from tx.
func (tx *FastPayTx) TxHashInput() (qc.TxHashInput, error) {
	var in qc.TxHashInput
	if tx == nil {
		return in, invalid("tx is missing")
	}
	if tx.ChainId == nil {
		return in, invalid("chain_id is missing")
	}
	in.ChainID = tx.ChainId.Value
	in.TempoTx = tx.GetTempoTx().GetData()
	key, seq, err := tx.Nonce.ToNonce("nonce")
	if err != nil {
		return in, err
	}
	in.NonceKey, in.NonceSeq = key, seq
	if in.Expiry, err = tx.Expiry.ToExpiry(); err != nil {
		return in, err
	}
	switch len(tx.ParentQcHash) {
	case 0:
	case 32:
		h := qc.Hash(tx.ParentQcHash)
		in.ParentQCHash = &h
	default:
		return in, invalid("parent_qc_hash must be 32 bytes or empty, got %d", len(tx.ParentQcHash))
	}
	return in, nil
}

// ToEffects converts an effects summary.
func (e *EffectsSummary) ToEffects() (qc.Effects, error) {
	r := rawEffectsOf(e)
	return r.toEffects()
}

// NewEffectsSummary wraps domain effects.
func NewEffectsSummary(e qc.Effects) *EffectsSummary {
	return &EffectsSummary{
		Sender:    NewAddress(e.Sender),
		Recipient: NewAddress(e.Recipient),
		Amount:    e.Amount,
		Asset:     NewAssetId(e.Asset),
		Nonce:     &Nonce2D{NonceKeyBe: append([]byte(nil), e.NonceKey[:]...), NonceSeq: e.NonceSeq},
	}
}

// ToCertificate converts a wire certificate. It checks lengths and that the
// signer's pubkey (when set) equals its id; it does not verify the signature.
func (c *ValidatorCertificate) ToCertificate() (qc.Certificate, error) {
	r := rawCertOf(c)
	return r.toCertificate()
}

// NewValidatorCertificate wraps a domain certificate.
func NewValidatorCertificate(c *qc.Certificate) *ValidatorCertificate {
	return &ValidatorCertificate{
		Signer:            &ValidatorId{Name: c.SignerName, Id: append([]byte(nil), c.Signer[:]...), Pubkey: append([]byte(nil), c.Signer[:]...)},
		TxHash:            append([]byte(nil), c.TxHash[:]...),
		EffectsHash:       append([]byte(nil), c.EffectsHash[:]...),
		Effects:           NewEffectsSummary(c.Effects),
		Signature:         append([]byte(nil), c.Signature[:]...),
		CreatedUnixMillis: c.CreatedUnixMillis,
	}
}

// MaxQCCerts bounds the certificates a wire QC may carry before any
// verification work is done.
const MaxQCCerts = 1024

// ToQC converts a wire QC, in full or compact form, without verifying it.
func (q *QuorumCertificate) ToQC() (*qc.QC, error) {
	if q == nil {
		return nil, invalid("qc is missing")
	}
	r := rawQC{txHash: q.TxHash, effectsHash: q.EffectsHash, qcHash: q.QcHash, threshold: q.Threshold, epoch: q.Epoch, count: len(q.Certs)}
	if r.count <= MaxQCCerts {
		r.certs = make([]rawCert, len(q.Certs))
		for i, c := range q.Certs {
			r.certs[i] = rawCertOf(c)
		}
	}
	return r.toQC()
}

// NewQuorumCertificate wraps a domain QC.
func NewQuorumCertificate(q *qc.QC) *QuorumCertificate {
	out := &QuorumCertificate{
		TxHash:      append([]byte(nil), q.TxHash[:]...),
		EffectsHash: append([]byte(nil), q.EffectsHash[:]...),
		Threshold:   q.Threshold,
		QcHash:      append([]byte(nil), q.Hash[:]...),
		Certs:       make([]*ValidatorCertificate, len(q.Certs)),
		Epoch:       q.Epoch,
	}
	for i := range q.Certs {
		out.Certs[i] = NewValidatorCertificate(&q.Certs[i])
	}
	return out
}

// Reject builds a RejectReason.
func Reject(code RejectCode, format string, args ...any) *RejectReason {
	return &RejectReason{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ToBinding converts a wire binding without verifying it.
func (b *SidecarBinding) ToBinding() (qc.Binding, error) {
	var out qc.Binding
	if b == nil {
		return out, invalid("binding is missing")
	}
	out.ChainID, out.FirstEpoch = b.ChainId, b.FirstEpoch
	if err := fixedBytes(out.ConsensusKey[:], b.ConsensusKey, "binding.consensus_key"); err != nil {
		return out, err
	}
	if err := fixedBytes(out.SidecarKey[:], b.SidecarKey, "binding.sidecar_key"); err != nil {
		return out, err
	}
	if err := fixedBytes(out.Signature[:], b.Signature, "binding.signature"); err != nil {
		return out, err
	}
	if err := fixedBytes(out.SidecarSignature[:], b.SidecarSignature, "binding.sidecar_signature"); err != nil {
		return out, err
	}
	return out, nil
}

// NewSidecarBinding wraps a domain binding.
func NewSidecarBinding(b *qc.Binding) *SidecarBinding {
	return &SidecarBinding{ChainId: b.ChainID, ConsensusKey: append([]byte(nil), b.ConsensusKey[:]...),
		SidecarKey: append([]byte(nil), b.SidecarKey[:]...), FirstEpoch: b.FirstEpoch, Signature: append([]byte(nil), b.Signature[:]...),
		SidecarSignature: append([]byte(nil), b.SidecarSignature[:]...)}
}

// ToClose converts a wire close without verifying it. Each entry's request
// is kept in its wire encoding, which the adopter decodes and checks
// against the entry's certificate.
func (c *EpochClose) ToClose() (*qc.Close, error) {
	if c == nil {
		return nil, invalid("close is missing")
	}
	if len(c.Entries) > qc.MaxCloseEntries {
		return nil, invalid("close lists %d entries, at most %d allowed", len(c.Entries), qc.MaxCloseEntries)
	}
	out := &qc.Close{ChainID: c.ChainId, Epoch: c.Epoch, Height: c.Height, Entries: make([]qc.CloseEntry, len(c.Entries))}
	if err := fixedBytes(out.Signer[:], c.Signer, "close.signer"); err != nil {
		return nil, err
	}
	if err := fixedBytes(out.Signature[:], c.Signature, "close.signature"); err != nil {
		return nil, err
	}
	for i, en := range c.Entries {
		if en == nil || en.Request == nil {
			return nil, invalid("close entry %d: request is missing", i)
		}
		cert, err := en.Cert.ToCertificate()
		if err != nil {
			return nil, fmt.Errorf("close entry %d: %w", i, err)
		}
		req, err := proto.Marshal(en.Request)
		if err != nil {
			return nil, fmt.Errorf("close entry %d: %w", i, err)
		}
		out.Entries[i] = qc.CloseEntry{Request: req, Cert: cert, CertEpoch: en.CertEpoch}
	}
	return out, nil
}

// NewEpochClose wraps a domain close. Each entry's request must be the
// encoding of a SubmitFastPayRequest.
func NewEpochClose(c *qc.Close) (*EpochClose, error) {
	out := &EpochClose{ChainId: c.ChainID, Epoch: c.Epoch, Height: c.Height, Signer: append([]byte(nil), c.Signer[:]...),
		Signature: append([]byte(nil), c.Signature[:]...), Entries: make([]*CloseEntry, len(c.Entries))}
	for i := range c.Entries {
		en := &c.Entries[i]
		req := new(SubmitFastPayRequest)
		if err := proto.Unmarshal(en.Request, req); err != nil {
			return nil, fmt.Errorf("close entry %d: request: %w", i, err)
		}
		out.Entries[i] = &CloseEntry{Request: req, Cert: NewValidatorCertificate(&en.Cert), CertEpoch: en.CertEpoch}
	}
	return out, nil
}
