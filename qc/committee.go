package qc

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
)

// Member is one signing key of a committee.
type Member struct {
	Name string
	// ID is the key that signs certificates (a sidecar key).
	ID ValidatorID
	// Seat is the consensus key whose vote this member casts (SPEC §5a).
	// Members sharing a seat count once towards a quorum, and conflicting
	// certificates of two keys of one seat are that seat's equivocation.
	// Zero means ID itself: in a committee file every validator signs with
	// its own key.
	Seat ValidatorID
}

// SeatOrID returns the member's seat, which is its ID unless set.
func (m Member) SeatOrID() ValidatorID {
	if m.Seat == (ValidatorID{}) {
		return m.ID
	}
	return m.Seat
}

// Committee is the fixed validator set of one chain and epoch: its seats
// (the votes: n, f and the quorum count seats) and the members that sign
// for them. In a committee file each member is its own seat; in a committee
// derived from the chain the seats are the active consensus keys and the
// members the sidecar keys bound to them, so a seat without a binding counts
// in n but cannot sign. It is immutable after construction and safe for
// concurrent use.
type Committee struct {
	domain  Domain
	members []Member
	keys    []memberKey // by member index
	index   map[ValidatorID]int
	seats   []ValidatorID // sorted
	seatOf  []int         // member index → seat index
	hash    Hash
}

// NewCommittee validates members (non-empty, distinct ids) and builds the
// committee in which every member is its own seat. Members are kept sorted
// by id; their Seat fields must be unset.
func NewCommittee(domain Domain, members []Member) (*Committee, error) {
	if len(members) == 0 {
		return nil, errors.New("committee has no members")
	}
	seats := make([]ValidatorID, len(members))
	for i, m := range members {
		if m.Seat != (ValidatorID{}) && m.Seat != m.ID {
			return nil, fmt.Errorf("committee member %q: seat %s differs from its key: use NewSeatedCommittee", m.Name, m.Seat.Hex())
		}
		seats[i] = m.ID
	}
	return NewSeatedCommittee(domain, seats, members)
}

// NewSeatedCommittee builds a committee of the given seats (distinct,
// non-empty) signed for by members (distinct ids, each for one of the
// seats; a seat may have no member, or several). Members and seats are kept
// sorted by key.
func NewSeatedCommittee(domain Domain, seats []ValidatorID, members []Member) (*Committee, error) {
	if len(seats) == 0 {
		return nil, errors.New("committee has no seats")
	}
	sortedSeats := slices.Clone(seats)
	slices.SortFunc(sortedSeats, func(a, b ValidatorID) int { return bytes.Compare(a[:], b[:]) })
	for i := 1; i < len(sortedSeats); i++ {
		if sortedSeats[i] == sortedSeats[i-1] {
			return nil, fmt.Errorf("committee seat %s appears twice", sortedSeats[i].Hex())
		}
	}
	sorted := slices.Clone(members)
	slices.SortFunc(sorted, func(a, b Member) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	c := &Committee{domain: domain, members: sorted, keys: make([]memberKey, len(sorted)), index: make(map[ValidatorID]int, len(sorted)),
		seats: sortedSeats, seatOf: make([]int, len(sorted))}
	for i, m := range sorted {
		if _, dup := c.index[m.ID]; dup {
			return nil, fmt.Errorf("committee member %q: duplicate id %s", m.Name, m.ID.Hex())
		}
		seat, ok := slices.BinarySearchFunc(sortedSeats, m.SeatOrID(), func(a, b ValidatorID) int { return bytes.Compare(a[:], b[:]) })
		if !ok {
			return nil, fmt.Errorf("committee member %q: seat %s is not a seat of the committee", m.Name, m.SeatOrID().Hex())
		}
		if m.Seat == m.ID {
			sorted[i].Seat = ValidatorID{} // one spelling for "its own seat", so hashes agree
		}
		c.index[m.ID] = i
		c.keys[i] = newMemberKey(m.ID)
		c.seatOf[i] = seat
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

// N returns the committee size: the number of seats.
func (c *Committee) N() int { return len(c.seats) }

// F returns the number of Byzantine seats tolerated.
func (c *Committee) F() int { return (len(c.seats) - 1) / 3 }

// Quorum returns the number of distinct seats a QC needs.
func (c *Committee) Quorum() int { return QuorumFor(len(c.seats)) }

// Members returns the signing members sorted by id. The slice must not be
// modified.
func (c *Committee) Members() []Member { return c.members }

// Seats returns the seats sorted by key. The slice must not be modified.
func (c *Committee) Seats() []ValidatorID { return c.seats }

// Seated reports whether some member signs for another key's seat, as in
// committees derived from the chain; false for a committee file's.
func (c *Committee) Seated() bool {
	for _, m := range c.members {
		if m.Seat != (ValidatorID{}) {
			return true
		}
	}
	return len(c.members) != len(c.seats)
}

// SeatOf returns the seat member id signs for.
func (c *Committee) SeatOf(id ValidatorID) (ValidatorID, bool) {
	i, ok := c.index[id]
	if !ok {
		return ValidatorID{}, false
	}
	return c.seats[c.seatOf[i]], true
}

// seatIndex returns the seat index of a member id; the id must be a member.
func (c *Committee) seatIndex(id ValidatorID) int { return c.seatOf[c.index[id]] }

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
	e = e.u64(c.domain.ChainID)
	e = e.u64(c.domain.Epoch)
	e = e.u32(uint32(len(c.members)))
	for _, m := range c.members {
		e = e.raw(m.ID[:])
		e = e.lenString(m.Name)
	}
	if c.Seated() {
		// A committee file's hash stays what it was before seats existed.
		e = e.str("seats")
		e = e.u32(uint32(len(c.seats)))
		for _, s := range c.seats {
			e = e.raw(s[:])
		}
		for i := range c.members {
			e = e.u32(uint32(c.seatOf[i]))
		}
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
