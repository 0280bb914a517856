package qc

import (
	"crypto/ed25519"
	"runtime"
	"sync"
	"weak"

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
	return memberKey{expanded: expandedKeys.get(id)}
}

// expandedKeys shares expanded keys among the committees of one process.
// An expanded key takes about 1.7 KB, and a process may seat the same
// validator in several committees at once: the epoch being left and the one
// being entered, or every validator of a network simulated in one process,
// where one table per committee would grow with the square of its size.
// An expanded key is only read after it is built, so sharing it is safe.
// The table holds its keys weakly: a key no committee uses any more is
// collected, and its entry with it.
var expandedKeys = keyTable{m: make(map[ValidatorID]weak.Pointer[voi.ExpandedPublicKey])}

type keyTable struct {
	mu sync.Mutex
	m  map[ValidatorID]weak.Pointer[voi.ExpandedPublicKey]
}

// get returns id's expanded key, building it when no live one exists, or
// nil when id is not a curve point.
func (t *keyTable) get(id ValidatorID) *voi.ExpandedPublicKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	if k := t.m[id].Value(); k != nil {
		return k
	}
	k, err := voi.NewExpandedPublicKey(voi.PublicKey(id[:]))
	if err != nil {
		return nil
	}
	wp := weak.Make(k)
	t.m[id] = wp
	runtime.AddCleanup(k, t.forget, keyEntry{id: id, wp: wp})
	return k
}

type keyEntry struct {
	id ValidatorID
	wp weak.Pointer[voi.ExpandedPublicKey]
}

// forget removes a collected key's entry, unless the id has been expanded
// again since (a new entry holds a different weak pointer).
func (t *keyTable) forget(e keyEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[e.id] == e.wp {
		delete(t.m, e.id)
	}
}

// verify reports whether sig is the member's signature of digest.
func (k memberKey) verify(digest []byte, sig []byte) bool {
	return k.expanded != nil && len(sig) == SignatureSize && voi.VerifyExpandedWithOptions(k.expanded, digest, sig, zip215)
}

// sign is RFC 8032 Ed25519 signing, byte for byte what crypto/ed25519
// produces, through curve25519-voi: its precomputed base-point table signs in
// about half the time, and a certificate is signed on every payment's
// critical path.
func sign(key ed25519.PrivateKey, msg []byte) []byte {
	return voi.Sign(voi.PrivateKey(key), msg)
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
