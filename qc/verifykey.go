package qc

import (
	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// stdlibRules makes the committee's fast path accept exactly the signatures
// crypto/ed25519.Verify accepts (cofactorless equation, canonical S,
// non-canonical and small-order A allowed), so a light client verifying a
// QC with the standard library never disagrees with the mesh.
var stdlibRules = &voi.Options{Verify: voi.VerifyOptionsStdLib}

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
	return k.expanded != nil && voi.VerifyExpandedWithOptions(k.expanded, digest, sig, stdlibRules)
}
