package qc

import (
	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// zip215 is the one signature rule of the mesh (SPEC §5): ZIP215's
// cofactored equation, canonical S, and any encoding of A and R that
// decodes to a curve point. Single and batch verification agree on it
// exactly, which the cofactorless rule of crypto/ed25519 cannot promise:
// a batch multiplies by the cofactor, so a signature valid only up to a
// small-order component would pass a batch and fail alone. With one rule
// for both paths no two honest members can disagree on a certificate,
// however they grouped it.
var zip215 = &voi.Options{Verify: voi.VerifyOptionsZIP_215}

// memberKey is a member's public key with its point decompressed and its
// multiples precomputed once, which makes each verification about twice as
// cheap as crypto/ed25519 (which decompresses the key on every call). A
// committee's keys never change, so the table is built when the committee
// is.
type memberKey struct {
	expanded *voi.ExpandedPublicKey // nil: the key is not a curve point, nothing verifies
}

func newMemberKey(id ValidatorID) memberKey {
	k, err := voi.NewExpandedPublicKey(voi.PublicKey(id[:]))
	if err != nil {
		return memberKey{}
	}
	return memberKey{expanded: k}
}

// verify reports whether sig is the member's signature of digest.
func (k memberKey) verify(digest []byte, sig []byte) bool {
	return k.expanded != nil && len(sig) == SignatureSize && voi.VerifyExpandedWithOptions(k.expanded, digest, sig, zip215)
}

// verifyZIP215 checks sig by a key that need not be a member's.
func verifyZIP215(pub ValidatorID, msg, sig []byte) bool {
	return len(sig) == SignatureSize && voi.VerifyWithOptions(voi.PublicKey(pub[:]), msg, sig, zip215)
}

// batchEntry is one signature queued in a batch.
type batchEntry struct {
	key memberKey
	msg []byte
	sig []byte
}

// verifyBatch checks every entry together and reports, when any fails,
// each entry's own verdict. All valid costs one multi-scalar
// multiplication; otherwise every entry is verified alone, so the verdicts
// are exactly those of memberKey.verify.
func verifyBatch(entries []batchEntry) (allValid bool, valid []bool) {
	if len(entries) == 0 {
		return true, nil
	}
	if len(entries) == 1 {
		// Alone, the batch equation costs more than the plain one.
		ok := entries[0].key.verify(entries[0].msg, entries[0].sig)
		return ok, []bool{ok}
	}
	bv := voi.NewBatchVerifierWithCapacity(len(entries))
	usable := true
	for _, e := range entries {
		if e.key.expanded == nil || len(e.sig) != SignatureSize {
			usable = false
			break
		}
		bv.AddExpandedWithOptions(e.key.expanded, e.msg, e.sig, zip215)
	}
	if usable {
		// Entropy comes from crypto/rand (nil reader); the batch equation
		// with random coefficients holds for all entries or fails.
		if bv.VerifyBatchOnly(nil) {
			valid = make([]bool, len(entries))
			for i := range valid {
				valid[i] = true
			}
			return true, valid
		}
	}
	valid = make([]bool, len(entries))
	allValid = true
	for i, e := range entries {
		valid[i] = e.key.verify(e.msg, e.sig)
		allValid = allValid && valid[i]
	}
	return allValid, valid
}
