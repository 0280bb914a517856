package committee

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
	// SidecarSignature is hex, by sidecar_key over the same digest: the
	// sidecar key's consent.
	SidecarSignature string `toml:"sidecar_signature"`
}

// WriteBinding writes b to path (never overwriting a file).
func WriteBinding(path string, b qc.Binding) error {
	data, err := encodeTOML(bindingFile{
		ChainID: b.ChainID, ConsensusKey: hex.EncodeToString(b.ConsensusKey[:]), SidecarKey: hex.EncodeToString(b.SidecarKey[:]),
		FirstEpoch: b.FirstEpoch, Signature: hex.EncodeToString(b.Signature[:]), SidecarSignature: hex.EncodeToString(b.SidecarSignature[:]),
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
		{"sidecar_signature", bf.SidecarSignature, b.SidecarSignature[:]},
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

// MaxBindingFiles bounds the binding files LoadBindings reads from one
// directory.
const MaxBindingFiles = 16384

// BindingFileError is a binding file that did not load, with the reason
// (errors.Is matches qc's ErrBinding* errors).
type BindingFileError struct {
	Path string
	Err  error
}

func (e BindingFileError) Error() string { return e.Err.Error() } // LoadBinding's errors name the file
func (e BindingFileError) Unwrap() error { return e.Err }

// LoadBindings reads the bindings an operator hands to a tool: path is one
// binding file, or a directory whose *.toml files (hidden files and
// subdirectories left out) are each a binding file, read in name order. In
// a directory, files that do not load (malformed, or a signature that does
// not verify for their own chain) are returned apart, each with its reason,
// so that one bad file among many gathered from other operators hides none
// of the rest; a single file that does not load is an error. Whether a
// binding applies to a chain and epoch is Derive's judgement.
func LoadBindings(path string) ([]qc.Binding, []BindingFileError, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("bindings: %w", err)
	}
	if !st.IsDir() {
		b, err := LoadBinding(path)
		if err != nil {
			return nil, nil, err
		}
		return []qc.Binding{b}, nil, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, nil, fmt.Errorf("bindings: %w", err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".toml") {
			continue
		}
		p := filepath.Join(path, name)
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			continue // a directory, or a link to nothing
		}
		files = append(files, p)
	}
	if len(files) > MaxBindingFiles {
		return nil, nil, fmt.Errorf("bindings: %s holds %d binding files, more than %d", path, len(files), MaxBindingFiles)
	}
	var out []qc.Binding
	var bad []BindingFileError
	for _, p := range files {
		b, err := LoadBinding(p)
		if err != nil {
			bad = append(bad, BindingFileError{Path: p, Err: err})
			continue
		}
		out = append(out, b)
	}
	return out, bad, nil
}

// BindingFileName is the file name a binding is stored under in a bindings
// directory: one file per (consensus key, first epoch, sidecar key).
func BindingFileName(b qc.Binding) string {
	return fmt.Sprintf("%x-%d-%x.toml", b.ConsensusKey[:8], b.FirstEpoch, b.SidecarKey[:8])
}

// AddBinding stores b in the bindings directory dir (created if missing)
// unless a binding of the same name is there already, after checking that
// both its signatures verify for chainID. Whether its consensus key is
// active is judged when a committee is derived.
func AddBinding(dir string, chainID uint64, b qc.Binding) (added bool, err error) {
	if err := qc.CheckBinding(&b, chainID, func(qc.ValidatorID) bool { return true }); err != nil {
		return false, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("bindings: %w", err)
	}
	err = WriteBinding(filepath.Join(dir, BindingFileName(b)), b)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	return err == nil, err
}
