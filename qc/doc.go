// Package qc holds the protocol's cryptographic core: canonical hashes of
// transactions, effects and quorum certificates (SPEC §2.1), ed25519
// validator certificates, the committee and its quorum rule (SPEC §2.2), and
// QC assembly and verification.
//
// It imports nothing else from this module, so light clients and tools can
// verify QCs with a small dependency footprint. Conversion to and from the
// protobuf wire types lives in package api/fastpayv1.
package qc
