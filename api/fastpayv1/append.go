package fastpayv1

import (
	"slices"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/allegro-mesh/allegro/qc"
)

// Encoders of the compact form straight from the domain types, for the hot
// paths that only write bytes (the validator's store, the mesh's frames):
// they append exactly what proto.Marshal writes for
// NewCompactValidatorCertificate and NewCompactQuorumCertificate, without
// building the dozen or so wire messages per certificate first. Fields are
// written in field-number order and proto3 zero values left out, as the
// protobuf runtime does; TestAppendCompactMatchesMarshal holds them to it.

// Field numbers of types.proto.
const (
	fieldAddressData = 1

	fieldNonceKey = 1
	fieldNonceSeq = 2

	fieldSignerName = 1
	fieldSignerID   = 2

	fieldEffectsSender    = 1
	fieldEffectsRecipient = 2
	fieldEffectsAmount    = 3
	fieldEffectsAsset     = 4
	fieldEffectsNonce     = 5

	fieldCertSigner      = 1
	fieldCertTxHash      = 2
	fieldCertEffectsHash = 3
	fieldCertEffects     = 4
	fieldCertSignature   = 5
	fieldCertCreated     = 6

	fieldQCTxHash      = 1
	fieldQCEffectsHash = 2
	fieldQCCerts       = 3
	fieldQCThreshold   = 4
	fieldQCHash        = 5
	fieldQCEpoch       = 6
)

// AppendCompactValidatorCertificate appends the encoding of
// NewCompactValidatorCertificate(c) to b.
func AppendCompactValidatorCertificate(b []byte, c *qc.Certificate) []byte {
	b = slices.Grow(b, certSize(c, true, true))
	return appendCert(b, c, true, true)
}

// AppendCompactQuorumCertificate appends the encoding of
// NewCompactQuorumCertificate(q) to b.
func AppendCompactQuorumCertificate(b []byte, q *qc.QC) []byte {
	size := bytesFieldSize(fieldQCTxHash, len(q.TxHash)) + bytesFieldSize(fieldQCEffectsHash, len(q.EffectsHash)) +
		varintFieldSize(fieldQCThreshold, uint64(q.Threshold)) + bytesFieldSize(fieldQCHash, len(q.Hash)) + varintFieldSize(fieldQCEpoch, q.Epoch)
	for i := range q.Certs {
		size += messageFieldSize(fieldQCCerts, certSize(&q.Certs[i], false, i == 0))
	}
	b = slices.Grow(b, size)
	b = appendBytesField(b, fieldQCTxHash, q.TxHash[:])
	b = appendBytesField(b, fieldQCEffectsHash, q.EffectsHash[:])
	for i := range q.Certs {
		c := &q.Certs[i]
		b = protowire.AppendTag(b, fieldQCCerts, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(certSize(c, false, i == 0)))
		b = appendCert(b, c, false, i == 0)
	}
	b = appendVarintField(b, fieldQCThreshold, uint64(q.Threshold))
	b = appendBytesField(b, fieldQCHash, q.Hash[:])
	return appendVarintField(b, fieldQCEpoch, q.Epoch)
}

// appendCert appends the compact certificate's fields; hashes and effects
// say whether its tx_hash and effects_hash, and its effects, are written.
func appendCert(b []byte, c *qc.Certificate, hashes, effects bool) []byte {
	b = protowire.AppendTag(b, fieldCertSigner, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(signerSize(c)))
	b = appendStringField(b, fieldSignerName, c.SignerName)
	b = appendBytesField(b, fieldSignerID, c.Signer[:])
	if hashes {
		b = appendBytesField(b, fieldCertTxHash, c.TxHash[:])
		b = appendBytesField(b, fieldCertEffectsHash, c.EffectsHash[:])
	}
	if effects {
		b = protowire.AppendTag(b, fieldCertEffects, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(effectsSize(&c.Effects)))
		b = appendEffects(b, &c.Effects)
	}
	b = appendBytesField(b, fieldCertSignature, c.Signature[:])
	return appendVarintField(b, fieldCertCreated, c.CreatedUnixMillis)
}

func appendEffects(b []byte, e *qc.Effects) []byte {
	b = appendAddressField(b, fieldEffectsSender, e.Sender)
	b = appendAddressField(b, fieldEffectsRecipient, e.Recipient)
	b = appendVarintField(b, fieldEffectsAmount, e.Amount)
	b = appendAddressField(b, fieldEffectsAsset, e.Asset)
	b = protowire.AppendTag(b, fieldEffectsNonce, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(nonceSize(e)))
	b = appendBytesField(b, fieldNonceKey, e.NonceKey[:])
	return appendVarintField(b, fieldNonceSeq, e.NonceSeq)
}

func certSize(c *qc.Certificate, hashes, effects bool) int {
	n := messageFieldSize(fieldCertSigner, signerSize(c))
	if hashes {
		n += bytesFieldSize(fieldCertTxHash, len(c.TxHash)) + bytesFieldSize(fieldCertEffectsHash, len(c.EffectsHash))
	}
	if effects {
		n += messageFieldSize(fieldCertEffects, effectsSize(&c.Effects))
	}
	return n + bytesFieldSize(fieldCertSignature, len(c.Signature)) + varintFieldSize(fieldCertCreated, c.CreatedUnixMillis)
}

func signerSize(c *qc.Certificate) int {
	return bytesFieldSize(fieldSignerName, len(c.SignerName)) + bytesFieldSize(fieldSignerID, len(c.Signer))
}

func effectsSize(e *qc.Effects) int {
	return addressFieldSize(fieldEffectsSender, e.Sender) + addressFieldSize(fieldEffectsRecipient, e.Recipient) +
		varintFieldSize(fieldEffectsAmount, e.Amount) + addressFieldSize(fieldEffectsAsset, e.Asset) +
		messageFieldSize(fieldEffectsNonce, nonceSize(e))
}

func addressFieldSize(num protowire.Number, a qc.Address) int {
	return messageFieldSize(num, bytesFieldSize(fieldAddressData, len(a)))
}

func nonceSize(e *qc.Effects) int {
	return bytesFieldSize(fieldNonceKey, len(e.NonceKey)) + varintFieldSize(fieldNonceSeq, e.NonceSeq)
}

// appendAddressField appends an Address or AssetId message field.
func appendAddressField(b []byte, num protowire.Number, a qc.Address) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(bytesFieldSize(fieldAddressData, len(a))))
	return appendBytesField(b, fieldAddressData, a[:])
}

// appendBytesField appends a bytes field, left out when empty (proto3).
func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendStringField(b []byte, num protowire.Number, v string) []byte {
	if v == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}

// appendVarintField appends a varint field, left out when zero (proto3).
func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func bytesFieldSize(num protowire.Number, n int) int {
	if n == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// messageFieldSize is the size of a present message field: written even
// when the message is empty.
func messageFieldSize(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

func varintFieldSize(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}
