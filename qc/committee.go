package qc

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
)

// Member is one validator of a committee.
type Member struct {
	Name string
	ID   ValidatorID
}

// Committee is the fixed validator set of one chain and epoch.
// It is immutable after construction and safe for concurrent use.
type Committee struct {
	domain  Domain
	members []Member
	keys    []memberKey // by member index
	index   map[ValidatorID]int
	hash    Hash
}

// NewCommittee validates members (non-empty, distinct ids) and builds the
// committee. Members are kept sorted by id.
func NewCommittee(domain Domain, members []Member) (*Committee, error) {
	if len(members) == 0 {
		return nil, errors.New("committee has no members")
	}
	sorted := slices.Clone(members)
	slices.SortFunc(sorted, func(a, b Member) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	c := &Committee{domain: domain, members: sorted, keys: make([]memberKey, len(sorted)), index: make(map[ValidatorID]int, len(sorted))}
	for i, m := range sorted {
		if _, dup := c.index[m.ID]; dup {
			return nil, fmt.Errorf("committee member %q: duplicate id %s", m.Name, m.ID.Hex())
		}
		c.index[m.ID] = i
		c.keys[i] = newMemberKey(m.ID)
	}
	c.hash = c.computeHash()
	return c, nil
}

// QuorumFor returns the quorum n − f for a committee of n, f = ⌊(n−1)/3⌋.
func QuorumFor(n int) int {
	if n <= 0 {
		return 0
	}
	return n - (n-1)/3
}

// Domain returns the chain id and epoch certificates are bound to.
func (c *Committee) Domain() Domain { return c.domain }

// N returns the committee size.
func (c *Committee) N() int { return len(c.members) }

// F returns the number of Byzantine members tolerated.
func (c *Committee) F() int { return (len(c.members) - 1) / 3 }

// Quorum returns the number of distinct signers a QC needs.
func (c *Committee) Quorum() int { return QuorumFor(len(c.members)) }

// Members returns the members sorted by id. The slice must not be modified.
func (c *Committee) Members() []Member { return c.members }

// Member looks a member up by id.
func (c *Committee) Member(id ValidatorID) (Member, bool) {
	i, ok := c.index[id]
	if !ok {
		return Member{}, false
	}
	return c.members[i], true
}

// Contains reports whether id is a member.
func (c *Committee) Contains(id ValidatorID) bool {
	_, ok := c.index[id]
	return ok
}

// Hash identifies the committee: its domain and members.
func (c *Committee) Hash() Hash { return c.hash }

func (c *Committee) computeHash() Hash {
	e := encoder(committeeTag)
	e.u64(c.domain.ChainID)
	e.u64(c.domain.Epoch)
	e.u32(uint32(len(c.members)))
	for _, m := range c.members {
		e.raw(m.ID[:])
		e.lenString(m.Name)
	}
	return sha256.Sum256(e)
}

// VerifyCertificate checks that c is signed by a committee member in the
// committee's domain and that its effects summary matches.
func (c *Committee) VerifyCertificate(cert *Certificate) error {
	if err := c.checkCertificate(cert); err != nil {
		return err
	}
	return c.verifySignature(cert)
}

// verifySignature is Certificate.VerifySignature with the member's
// precomputed key; cert's signer must be a member.
func (c *Committee) verifySignature(cert *Certificate) error {
	digest := CertDigest(c.domain, cert.TxHash, cert.EffectsHash)
	if !c.keys[c.index[cert.Signer]].verify(digest[:], cert.Signature[:]) {
		return cert.signatureError(c.domain)
	}
	return nil
}

// checkCertificate is everything VerifyCertificate checks but the
// signature: the signer is a member and the effects match their hash.
func (c *Committee) checkCertificate(cert *Certificate) error {
	if !c.Contains(cert.Signer) {
		return fmt.Errorf("%w: %s", ErrUnknownSigner, cert.Signer.Hex())
	}
	return cert.CheckEffects()
}
