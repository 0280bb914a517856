package committee

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/allegro-mesh/allegro/qc"
)

// bindingFile is the on-disk form of a sidecar key binding (SPEC §5a):
// TOML, public, made once by the operator with the consensus key offline.
type bindingFile struct {
	ChainID      uint64 `toml:"chain_id"`
	ConsensusKey string `toml:"consensus_key"` // hex ed25519 public key
	SidecarKey   string `toml:"sidecar_key"`   // hex ed25519 public key
	FirstEpoch   uint64 `toml:"first_epoch"`
	Signature    string `toml:"signature"` // hex, by consensus_key
}

// WriteBinding writes b to path (never overwriting a file).
func WriteBinding(path string, b qc.Binding) error {
	data, err := encodeTOML(bindingFile{
		ChainID: b.ChainID, ConsensusKey: hex.EncodeToString(b.ConsensusKey[:]), SidecarKey: hex.EncodeToString(b.SidecarKey[:]),
		FirstEpoch: b.FirstEpoch, Signature: hex.EncodeToString(b.Signature[:]),
	})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("binding file: %w", err)
	}
	if _, err := f.Write(append([]byte("# Sidecar key binding: public; publish it and give it to your sidecar.\n"), data...)); err != nil {
		f.Close()
		return fmt.Errorf("binding file %s: %w", path, err)
	}
	return f.Close()
}

// LoadBinding reads a binding file and checks that its signature verifies
// for its own chain id; whether the consensus key is active is the caller's
// check against chain state (qc.CheckBinding).
func LoadBinding(path string) (qc.Binding, error) {
	var bf bindingFile
	md, err := toml.DecodeFile(path, &bf)
	if err != nil {
		return qc.Binding{}, fmt.Errorf("binding file %s: %w", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		return qc.Binding{}, fmt.Errorf("binding file %s: unknown key %q", path, undecoded[0].String())
	}
	b := qc.Binding{ChainID: bf.ChainID, FirstEpoch: bf.FirstEpoch}
	for _, f := range []struct {
		name string
		hex  string
		dst  []byte
	}{
		{"consensus_key", bf.ConsensusKey, b.ConsensusKey[:]},
		{"sidecar_key", bf.SidecarKey, b.SidecarKey[:]},
		{"signature", bf.Signature, b.Signature[:]},
	} {
		raw, err := hex.DecodeString(strings.TrimPrefix(f.hex, "0x"))
		if err != nil || len(raw) != len(f.dst) {
			return qc.Binding{}, fmt.Errorf("binding file %s: %s must be %d hex bytes", path, f.name, len(f.dst))
		}
		copy(f.dst, raw)
	}
	if err := qc.CheckBinding(&b, b.ChainID, func(qc.ValidatorID) bool { return true }); err != nil {
		return qc.Binding{}, fmt.Errorf("binding file %s: %w", path, err)
	}
	return b, nil
}
