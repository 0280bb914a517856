// Package committee is a network's membership: the committee file (the
// validator set of one network with its network parameters), the
// validators' key files and sidecar key bindings, and the committee of an
// epoch derived from the chain's validator set and those bindings.
// Sidecars, light clients, wallets and tools use them; nothing here runs.
package committee

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo"
)

// File is the network's validator set on disk (TOML): every
// validator and light client of one network uses the same file.
type File struct {
	ChainID uint64 `toml:"chain_id"`
	// Epoch is the network's mesh epoch; with EpochLength set, its first.
	Epoch uint64 `toml:"epoch"`
	// EpochLength, when set, makes the mesh change epochs with the chain
	// (SPEC §5a): epoch e serves blocks [e·L, (e+1)·L) of the chain, and
	// at each boundary the members close the old epoch and hand over to
	// the new one. The members listed here form every epoch's committee.
	// 0 (the default): the one epoch Epoch, for good.
	EpochLength uint64 `toml:"epoch_length,omitempty"`
	// CommitteeSource is where each epoch's committee comes from: "file"
	// (the default: the members listed here) or "chain": the active
	// validators of the chain's ValidatorConfig at the epoch's committee
	// block, signing through the sidecar keys their bindings name (SPEC
	// §5a); the members listed here are then an address book of sidecar
	// keys, to find peers. "chain" needs epoch_length.
	CommitteeSource string `toml:"committee_source,omitempty"`
	// QCShards is the number of QC topics (default 16).
	QCShards int `toml:"qc_shards"`
	// TestNetwork marks a network built for testing. Test-only behaviour
	// (such as a Byzantine validator mode) is refused unless it is set.
	TestNetwork bool `toml:"test_network"`
	// FeeModel says how the chain charges fees, which validators reserve
	// from the payer before signing: "tempo" (the default: a USD TIP-20
	// fee token chosen by Tempo's rules) or "native" (gas paid in the
	// chain's native currency, as on the embedded development chain).
	FeeModel string `toml:"fee_model,omitempty"`
	// SettlementMargin is how long a 0x76 transaction must stay valid
	// after it is certified (valid_before) and how far ahead of its
	// valid_after it may be certified. Default 10 s.
	SettlementMargin time.Duration `toml:"settlement_margin,omitempty"`
	Members          []Member      `toml:"member"`
}

// Member is one validator: its name, ed25519 public key (hex) and
// libp2p multiaddrs (without /p2p/: the peer id follows from the key).
type Member struct {
	Name      string   `toml:"name"`
	PublicKey string   `toml:"public_key"`
	Addrs     []string `toml:"addrs"`
	// Region is where the validator runs (any label, such as a cloud
	// region). Only a sparse mesh uses it (p2p.dial_in_region): members
	// dial more peers of their own region than of others. Optional.
	Region string `toml:"region,omitempty"`
}

// Committee sources.
const (
	SourceFile  = "file"
	SourceChain = "chain"
)

// FromChain reports whether each epoch's committee is derived from the
// chain.
func (f *File) FromChain() bool { return f.CommitteeSource == SourceChain }

// LoadFile reads and validates a committee file.
func LoadFile(path string) (*File, error) {
	var f File
	md, err := toml.DecodeFile(path, &f)
	if err != nil {
		return nil, fmt.Errorf("committee file %s: %w", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		return nil, fmt.Errorf("committee file %s: unknown key %q", path, undecoded[0].String())
	}
	if f.QCShards == 0 {
		f.QCShards = 16
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("committee file %s: %w", path, err)
	}
	return &f, nil
}

// Validate checks every field.
func (f *File) Validate() error {
	if f.ChainID == 0 {
		return fmt.Errorf("chain_id must be set")
	}
	if f.QCShards < 1 || f.QCShards > 256 {
		return fmt.Errorf("qc_shards must be between 1 and 256, got %d", f.QCShards)
	}
	if _, err := f.Fees(); err != nil {
		return fmt.Errorf("fee_model: %w", err)
	}
	switch f.CommitteeSource {
	case "", SourceFile:
	case SourceChain:
		if f.EpochLength == 0 {
			return fmt.Errorf("committee_source = %q needs epoch_length", SourceChain)
		}
	default:
		return fmt.Errorf("committee_source must be %q or %q, got %q", SourceFile, SourceChain, f.CommitteeSource)
	}
	if f.SettlementMargin < 0 {
		return fmt.Errorf("settlement_margin must not be negative, got %s", f.SettlementMargin)
	}
	if len(f.Members) == 0 {
		return fmt.Errorf("no [[member]] entries")
	}
	if _, err := f.Committee(); err != nil {
		return err
	}
	_, err := f.Bootstrap()
	return err
}

func parsePublicKey(s string) (qc.ValidatorID, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil {
		return qc.ValidatorID{}, fmt.Errorf("public_key %q is not hex", s)
	}
	return qc.ValidatorIDFromBytes(b)
}

// Fees returns the network's fee model ("tempo" when unset).
func (f *File) Fees() (tempo.FeeModel, error) {
	if f.FeeModel == "" {
		return tempo.TempoFees{}, nil
	}
	return tempo.FeeModelByName(f.FeeModel)
}

// Margin returns the network's settlement margin (the default when unset).
func (f *File) Margin() time.Duration {
	if f.SettlementMargin == 0 {
		return tempo.DefaultSettlementMargin
	}
	return f.SettlementMargin
}

// Committee returns the protocol committee.
func (f *File) Committee() (*qc.Committee, error) {
	members := make([]qc.Member, len(f.Members))
	for i, m := range f.Members {
		if m.Name == "" {
			return nil, fmt.Errorf("member %d: name is empty", i)
		}
		id, err := parsePublicKey(m.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", m.Name, err)
		}
		members[i] = qc.Member{Name: m.Name, ID: id}
	}
	return qc.NewCommittee(qc.Domain{ChainID: f.ChainID, Epoch: f.Epoch}, members)
}

// CommitteeAt returns the committee of epoch e: the file's members in e's
// domain.
func (f *File) CommitteeAt(e uint64) (*qc.Committee, error) {
	g := *f
	g.Epoch = e
	return g.Committee()
}

// EpochOf returns the mesh epoch the chain's block height belongs to: with
// an epoch length, height / epoch_length but never before the file's
// first epoch; without one, the file's epoch.
func (f *File) EpochOf(height uint64) uint64 {
	if f.EpochLength == 0 {
		return f.Epoch
	}
	return max(f.Epoch, height/f.EpochLength)
}

// Bootstrap returns every member's peer id and addresses.
func (f *File) Bootstrap() ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, m := range f.Members {
		id, err := parsePublicKey(m.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", m.Name, err)
		}
		pid, err := p2p.PeerIDFromValidatorID(id)
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", m.Name, err)
		}
		info := peer.AddrInfo{ID: pid}
		for _, s := range m.Addrs {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				return nil, fmt.Errorf("member %q: address %q: %w", m.Name, s, err)
			}
			info.Addrs = append(info.Addrs, a)
		}
		out = append(out, info)
	}
	return out, nil
}

// Write stores f at path.
func (f *File) Write(path string) error {
	var b bytes.Buffer
	b.WriteString("# Allegro committee: the validator set of one network. Share it with every\n# validator and light client of the network.\n")
	if err := toml.NewEncoder(&b).Encode(f); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
