package safety

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/allegro-mesh/allegro/qc"
)

// ErrUnknownEpoch is returned for a QC that carries an epoch no committee
// was given for: it can be neither verified nor refuted.
var ErrUnknownEpoch = errors.New("safety: no committee for the QC's epoch")

// Committees are the committees of the epochs a run spanned, one per epoch,
// all of one chain (SPEC §5a). A QC is verified against the committee of
// its epoch; a certificate, which does not name its epoch, belongs to the
// committee under whose domain its signature verifies (domains differ per
// epoch, so at most one does). A network with a committee file has one.
// Committees is immutable and safe for concurrent use.
type Committees struct {
	byEpoch map[uint64]*qc.Committee
	list    []*qc.Committee // ascending epoch
}

// NewCommittees collects committees of one chain and distinct epochs (at
// least one).
func NewCommittees(cs ...*qc.Committee) (*Committees, error) {
	if len(cs) == 0 {
		return nil, errors.New("safety: committees: none given")
	}
	s := &Committees{byEpoch: make(map[uint64]*qc.Committee, len(cs))}
	for i, c := range cs {
		if c == nil {
			return nil, fmt.Errorf("safety: committees: committee %d is nil", i)
		}
		d := c.Domain()
		if first := cs[0].Domain(); d.ChainID != first.ChainID {
			return nil, fmt.Errorf("safety: committees: epoch %d is of chain %d, epoch %d of chain %d", d.Epoch, d.ChainID, first.Epoch, first.ChainID)
		}
		if _, dup := s.byEpoch[d.Epoch]; dup {
			return nil, fmt.Errorf("safety: committees: two committees of epoch %d", d.Epoch)
		}
		s.byEpoch[d.Epoch] = c
		s.list = append(s.list, c)
	}
	slices.SortFunc(s.list, func(a, b *qc.Committee) int {
		x, y := a.Domain().Epoch, b.Domain().Epoch
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
	return s, nil
}

// ChainID returns the committees' chain.
func (s *Committees) ChainID() uint64 { return s.list[0].Domain().ChainID }

// Epochs returns the epochs, ascending.
func (s *Committees) Epochs() []uint64 {
	out := make([]uint64, len(s.list))
	for i, c := range s.list {
		out[i] = c.Domain().Epoch
	}
	return out
}

// List returns the committees by ascending epoch. The slice must not be
// modified.
func (s *Committees) List() []*qc.Committee { return s.list }

// Epoch returns the committee of epoch e.
func (s *Committees) Epoch(e uint64) (*qc.Committee, bool) {
	c, ok := s.byEpoch[e]
	return c, ok
}

// Member looks id up as a signing member, in the earliest epoch that has
// it.
func (s *Committees) Member(id qc.ValidatorID) (qc.Member, bool) {
	for _, c := range s.list {
		if m, ok := c.Member(id); ok {
			return m, true
		}
	}
	return qc.Member{}, false
}

// VerifyCertificate verifies cert against the committee whose domain its
// signature verifies under and returns that committee.
func (s *Committees) VerifyCertificate(cert *qc.Certificate) (*qc.Committee, error) {
	var errs []error
	var epochs []uint64
	for _, c := range s.list {
		if !c.Contains(cert.Signer) {
			continue
		}
		err := c.VerifyCertificate(cert)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		epochs = append(epochs, c.Domain().Epoch)
	}
	switch len(errs) {
	case 0:
		return nil, fmt.Errorf("%w: %s (in no epoch's committee)", qc.ErrUnknownSigner, cert.Signer.Hex())
	case 1:
		return nil, errs[0]
	}
	// The same key in several epochs: each domain fails; the first error
	// says why, the sentinel is the same for all.
	return nil, fmt.Errorf("verifies in none of epochs %s of its signer: %w", epochList(epochs), errs[0])
}

// attribute returns the committee of q's epoch: the one it carries, or for
// epoch 0 (not carried) the one under whose domain its first certificate's
// signature verifies. For a carried epoch without a committee it returns
// an error wrapping qc.ErrWrongEpoch when the signatures belong to a known
// committee (the carried epoch lies), else ErrUnknownEpoch.
func (s *Committees) attribute(q *qc.QC) (*qc.Committee, error) {
	if q.Epoch != 0 {
		if c, ok := s.byEpoch[q.Epoch]; ok {
			return c, nil
		}
		if len(q.Certs) > 0 {
			if c, err := s.VerifyCertificate(&q.Certs[0]); err == nil {
				return nil, fmt.Errorf("%w: qc of tx %s carries epoch %d, its certificates are signed in epoch %d", qc.ErrWrongEpoch, q.TxHash, q.Epoch, c.Domain().Epoch)
			}
		}
		return nil, fmt.Errorf("%w: qc of tx %s carries epoch %d, committees are known for epochs %s", ErrUnknownEpoch, q.TxHash, q.Epoch, epochList(s.Epochs()))
	}
	if len(s.list) == 1 || len(q.Certs) == 0 {
		return s.list[0], nil // the committee's own checks say what is wrong
	}
	c, err := s.VerifyCertificate(&q.Certs[0])
	if err != nil {
		return nil, fmt.Errorf("qc for tx %s carries no epoch and its first certificate verifies in no epoch: %w", q.TxHash, err)
	}
	return c, nil
}

// VerifyQC verifies q against the committee of its epoch (see attribute)
// and returns that committee; it returns an error wrapping ErrUnknownEpoch
// for an epoch no committee was given for.
func (s *Committees) VerifyQC(q *qc.QC) (*qc.Committee, error) {
	c, err := s.attribute(q)
	if err != nil {
		return nil, err
	}
	if err := c.VerifyQC(q); err != nil {
		return nil, err
	}
	return c, nil
}

// VerifyEquivocation checks that both certificates verify, each in its own
// epoch's committee, are by one seat (a consensus key, or a committee
// file's member key) and conflict: one contention key, different
// transaction or effects. The epochs may differ: a validator signs at most
// one transaction per contention key ever (SPEC §4), across epochs too. It
// returns the committees of the first and the second certificate.
func (s *Committees) VerifyEquivocation(e *qc.Equivocation) (first, second *qc.Committee, err error) {
	if e.First.Effects.ContentionKey() != e.Second.Effects.ContentionKey() {
		return nil, nil, fmt.Errorf("%w: different contention keys", qc.ErrNotEquivocation)
	}
	if e.First.TxHash == e.Second.TxHash && e.First.EffectsHash == e.Second.EffectsHash {
		return nil, nil, fmt.Errorf("%w: the same transaction and effects", qc.ErrNotEquivocation)
	}
	if first, err = s.VerifyCertificate(&e.First); err != nil {
		return nil, nil, fmt.Errorf("first certificate: %w", err)
	}
	if second, err = s.VerifyCertificate(&e.Second); err != nil {
		return nil, nil, fmt.Errorf("second certificate: %w", err)
	}
	a, _ := first.SeatOf(e.First.Signer)
	b, _ := second.SeatOf(e.Second.Signer)
	if a != b {
		return nil, nil, fmt.Errorf("%w: signers of different seats", qc.ErrNotEquivocation)
	}
	return first, second, nil
}

// epochList renders epochs as "1, 2 and 3".
func epochList(epochs []uint64) string {
	parts := make([]string, len(epochs))
	for i, e := range epochs {
		parts[i] = fmt.Sprint(e)
	}
	if len(parts) < 2 {
		return strings.Join(parts, "")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}
