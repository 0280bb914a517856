package committee

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/ethereum/go-ethereum/common"

	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// Errors of Derive and AcceptBinding, matched with errors.Is. A binding's
// own faults (another chain, a bad signature, an inactive or self-bound
// consensus key) are qc's ErrBinding* errors.
var (
	// ErrSidecarKeyShared: one sidecar key bound by two consensus keys would
	// sign for two seats, so it signs for neither.
	ErrSidecarKeyShared = errors.New("committee: sidecar key is bound by more than one consensus key")
	// ErrSidecarKeyIsConsensusKey: a consensus key never enters a sidecar,
	// its own or another validator's.
	ErrSidecarKeyIsConsensusKey = errors.New("committee: sidecar key is a consensus key of the validator set")
	// ErrBindingTooEarly: a binding learned while the network runs names an
	// epoch whose committee may already be fixed.
	ErrBindingTooEarly = errors.New("committee: binding takes effect too early")
	// ErrNoActiveValidators: the validator set has no active validator.
	ErrNoActiveValidators = errors.New("committee: the validator set has no active validator")
)

// BindingLead is how many epochs after the current one a binding learned
// while the network runs takes effect at the earliest (SPEC §5a): committee
// e + 1 is known during epoch e, so e + 2 is the first that can change.
const BindingLead = 2

// AcceptBinding applies the timing rule to a binding learned while the
// network runs (published in the mesh, posted to the API): its first epoch
// must be at least current + BindingLead. It does not check the signature
// or the consensus key, which Derive judges against the validator set of
// the epoch the binding is used in.
//
// The bindings of a network's first committee (first_epoch 0 when the
// network starts at epoch 0) cannot pass this rule and are not meant to:
// they are given to every sidecar as files (LoadBindings) before it starts.
func AcceptBinding(b *qc.Binding, current uint64) error {
	if current > math.MaxUint64-BindingLead {
		return fmt.Errorf("%w: current epoch %d leaves no later epoch", ErrBindingTooEarly, current)
	}
	if earliest := current + BindingLead; b.FirstEpoch < earliest {
		return fmt.Errorf("%w: first epoch %d, current epoch %d: bindings learned now take effect at epoch %d or later",
			ErrBindingTooEarly, b.FirstEpoch, current, earliest)
	}
	return nil
}

// Seat is an active consensus key of a derived committee, with the chain's
// record of its validator and the sidecar keys signing for it.
type Seat struct {
	Key     qc.ValidatorID
	Name    string // "v<index>-<first 4 bytes of the validator address>"
	Index   uint64
	Address common.Address
	// Members are the sidecar keys signing for the seat, sorted; none: the
	// seat counts in n but cannot sign.
	Members []qc.ValidatorID
	// FirstEpoch is the first epoch of the bindings in effect (with Members).
	FirstEpoch uint64
}

// RefusedBinding is a binding Derive did not use, with the reason.
type RefusedBinding struct {
	Binding qc.Binding
	Err     error
}

// DeriveReport says how Derive read the validator set and the bindings.
// Every list is in a canonical order, whatever the order of the inputs.
type DeriveReport struct {
	// Seats are the committee's seats by validator index.
	Seats []Seat
	// Unbound are the seats without a member, by validator index.
	Unbound []Seat
	// Refused are the bindings not used, sorted by consensus key, first
	// epoch and sidecar key.
	Refused []RefusedBinding
	// Pending are valid bindings whose first epoch is after the epoch
	// derived; whether their consensus key is active is judged at that
	// epoch.
	Pending []qc.Binding
	// Superseded are valid bindings revoked by a later binding of the same
	// consensus key.
	Superseded []qc.Binding
	// DuplicateKeys are consensus keys listed by more than one active
	// validator: each is one seat (named after its lowest index).
	DuplicateKeys []qc.ValidatorID
}

// Derive builds committee epoch of chainID from the chain's validator set
// in the state after Schedule.CommitteeBlock(epoch) and the sidecar key
// bindings known (SPEC §5a). The seats are the consensus keys of the active
// validators: n, f and the quorum count them. For each seat the bindings in
// effect are its valid bindings with the largest first epoch ≤ epoch (a
// later binding revokes earlier ones); several such bindings of distinct
// sidecar keys all sign for the seat, counted once. A binding is refused,
// and reported rather than failing the derivation, if qc.CheckBinding
// refuses it against the active set, if its sidecar key is a consensus key
// of the validator set, or if its sidecar key is also bound, in effect, by
// another consensus key (then it signs for neither seat). Members are named
// after their validator's index and address.
//
// The result depends on the inputs as sets: any order gives the same
// committee hash and report.
func Derive(chainID, epoch uint64, validators []tempo.Validator, bindings []qc.Binding) (*qc.Committee, DeriveReport, error) {
	var report DeriveReport
	if chainID == 0 {
		return nil, report, errors.New("committee: derive: chain id 0")
	}
	seats, listed, dups, err := activeSeats(validators)
	if err != nil {
		return nil, report, err
	}
	report.DuplicateKeys = dups
	seatOf := make(map[qc.ValidatorID]int, len(seats))
	for i, s := range seats {
		seatOf[s.Key] = i
	}
	isActive := func(k qc.ValidatorID) bool { _, ok := seatOf[k]; return ok }
	anyKey := func(qc.ValidatorID) bool { return true }

	sorted := slices.Clone(bindings)
	slices.SortFunc(sorted, compareBindings)
	sorted = slices.Compact(sorted) // the same binding twice counts once

	// inEffect[ck] holds ck's valid bindings with the largest first epoch
	// ≤ epoch seen so far; sorted input visits each key's bindings in
	// ascending first epoch and sidecar key.
	inEffect := make(map[qc.ValidatorID][]qc.Binding)
	for _, b := range sorted {
		active := isActive
		if b.FirstEpoch > epoch {
			active = anyKey // its own epoch's validator set judges it
		}
		if err := qc.CheckBinding(&b, chainID, active); err != nil {
			report.Refused = append(report.Refused, RefusedBinding{b, err})
			continue
		}
		if listed[b.SidecarKey] {
			report.Refused = append(report.Refused, RefusedBinding{b, fmt.Errorf("%w: %s", ErrSidecarKeyIsConsensusKey, b.SidecarKey.Hex())})
			continue
		}
		if b.FirstEpoch > epoch {
			report.Pending = append(report.Pending, b)
			continue
		}
		cur := inEffect[b.ConsensusKey]
		switch {
		case len(cur) == 0 || b.FirstEpoch > cur[0].FirstEpoch:
			report.Superseded = append(report.Superseded, cur...)
			inEffect[b.ConsensusKey] = []qc.Binding{b}
		case cur[len(cur)-1].SidecarKey == b.SidecarKey:
			// The same binding again, its signature encoded otherwise.
		default: // the same first epoch, another sidecar key
			inEffect[b.ConsensusKey] = append(cur, b)
		}
	}

	claims := make(map[qc.ValidatorID][]qc.ValidatorID) // sidecar key → consensus keys
	for ck, bs := range inEffect {
		for _, b := range bs {
			claims[b.SidecarKey] = append(claims[b.SidecarKey], ck)
		}
	}

	seatKeys := make([]qc.ValidatorID, len(seats))
	var members []qc.Member
	for i := range seats {
		s := &seats[i]
		seatKeys[i] = s.Key
		var kept []qc.Binding
		for _, b := range inEffect[s.Key] {
			if others := claims[b.SidecarKey]; len(others) > 1 {
				report.Refused = append(report.Refused, RefusedBinding{b, fmt.Errorf("%w: %s is bound by consensus keys %s",
					ErrSidecarKeyShared, b.SidecarKey.Hex(), joinKeys(others))})
				continue
			}
			kept = append(kept, b)
		}
		for _, b := range kept {
			name := s.Name
			if len(kept) > 1 {
				name += "/" + b.SidecarKey.String()
			}
			members = append(members, qc.Member{Name: name, ID: b.SidecarKey, Seat: s.Key})
			s.Members = append(s.Members, b.SidecarKey)
			s.FirstEpoch = b.FirstEpoch
		}
	}
	c, err := qc.NewSeatedCommittee(qc.Domain{ChainID: chainID, Epoch: epoch}, seatKeys, members)
	if err != nil {
		return nil, report, fmt.Errorf("committee: derive epoch %d: %w", epoch, err)
	}

	slices.SortFunc(seats, func(a, b Seat) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), bytes.Compare(a.Key[:], b.Key[:]))
	})
	report.Seats = seats
	for _, s := range seats {
		if len(s.Members) == 0 {
			report.Unbound = append(report.Unbound, s)
		}
	}
	slices.SortStableFunc(report.Refused, func(a, b RefusedBinding) int { return compareBindings(a.Binding, b.Binding) })
	return c, report, nil
}

// activeSeats returns one seat per consensus key of an active validator
// (sorted by key), every consensus key the set lists, and the keys listed
// by more than one active validator.
func activeSeats(validators []tempo.Validator) ([]Seat, map[qc.ValidatorID]bool, []qc.ValidatorID, error) {
	listed := make(map[qc.ValidatorID]bool, len(validators))
	byKey := make(map[qc.ValidatorID]Seat)
	var dups []qc.ValidatorID
	for _, v := range validators {
		key := qc.ValidatorID(v.PublicKey)
		listed[key] = true
		if !v.Active {
			continue
		}
		if key == (qc.ValidatorID{}) {
			return nil, nil, nil, fmt.Errorf("committee: active validator %d (%s) has a zero consensus key", v.Index, v.ValidatorAddress)
		}
		s := Seat{Key: key, Name: fmt.Sprintf("v%d-%x", v.Index, v.ValidatorAddress[:4]), Index: v.Index, Address: v.ValidatorAddress}
		prev, dup := byKey[key]
		if dup {
			if !slices.Contains(dups, key) {
				dups = append(dups, key)
			}
			if cmp.Or(cmp.Compare(prev.Index, s.Index), bytes.Compare(prev.Address[:], s.Address[:])) <= 0 {
				continue
			}
		}
		byKey[key] = s
	}
	if len(byKey) == 0 {
		return nil, nil, nil, ErrNoActiveValidators
	}
	seats := make([]Seat, 0, len(byKey))
	for _, s := range byKey {
		seats = append(seats, s)
	}
	slices.SortFunc(seats, func(a, b Seat) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	slices.SortFunc(dups, func(a, b qc.ValidatorID) int { return bytes.Compare(a[:], b[:]) })
	return seats, listed, dups, nil
}

// compareBindings orders bindings by consensus key, first epoch, sidecar
// key, chain and signature.
func compareBindings(a, b qc.Binding) int {
	return cmp.Or(
		bytes.Compare(a.ConsensusKey[:], b.ConsensusKey[:]),
		cmp.Compare(a.FirstEpoch, b.FirstEpoch),
		bytes.Compare(a.SidecarKey[:], b.SidecarKey[:]),
		cmp.Compare(a.ChainID, b.ChainID),
		bytes.Compare(a.Signature[:], b.Signature[:]),
	)
}

func joinKeys(keys []qc.ValidatorID) string {
	sorted := slices.Clone(keys)
	slices.SortFunc(sorted, func(a, b qc.ValidatorID) int { return bytes.Compare(a[:], b[:]) })
	s := make([]string, len(sorted))
	for i, k := range sorted {
		s[i] = k.Hex()
	}
	return strings.Join(s, " and ")
}
