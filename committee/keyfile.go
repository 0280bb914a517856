package committee

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
)

// keyFile is the on-disk form of a validator key: TOML, mode 0600.
type keyFile struct {
	Name       string `toml:"name"`
	PrivateKey string `toml:"private_key"` // hex ed25519 seed (32 bytes)
	PublicKey  string `toml:"public_key"`  // hex, for reference only
}

// ErrKeyFileExists is returned by WriteKeyFile when the file exists.
var ErrKeyFileExists = errors.New("key file already exists")

// GenerateKey returns a new ed25519 validator key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	return key, err
}

// WriteKeyFile writes key to path with mode 0600. It never overwrites.
func WriteKeyFile(path, name string, key ed25519.PrivateKey) error {
	data, err := encodeTOML(keyFile{
		Name:       name,
		PrivateKey: hex.EncodeToString(key.Seed()),
		PublicKey:  hex.EncodeToString(key.Public().(ed25519.PublicKey)),
	})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w: %s (remove it first to replace the key)", ErrKeyFileExists, path)
	}
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	header := "# Allegro validator key: keep this file secret. Its public key identifies the\n# validator in the committee file and is also its libp2p identity.\n"
	if _, err := f.WriteString(header + string(data)); err != nil {
		f.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return f.Close()
}

// KeyModeError refuses a key file that group or others may access. Fix
// says how to correct it where the file is: chmod when this process may
// change the file's mode, otherwise (a read-only mount, such as a container
// secret, or a file owned by another user) where the mode must be set.
type KeyModeError struct {
	Path string
	Mode fs.FileMode
	Fix  string
}

// Is makes a KeyModeError match ErrKeyFileMode.
func (e *KeyModeError) Is(target error) bool { return target == ErrKeyFileMode }

func (e *KeyModeError) Error() string {
	return fmt.Sprintf("key file %s has mode %04o: it must not be accessible to group or others (%s)", e.Path, e.Mode, e.Fix)
}

// LoadKeyFile reads a key file. It refuses files readable by group or others.
func LoadKeyFile(path string) (name string, key ed25519.PrivateKey, err error) {
	if err := CheckSecretFileMode(path); err != nil {
		return "", nil, err
	}
	var kf keyFile
	if _, err := toml.DecodeFile(path, &kf); err != nil {
		return "", nil, fmt.Errorf("key file %s: %w", path, err)
	}
	seed, err := hex.DecodeString(strings.TrimPrefix(kf.PrivateKey, "0x"))
	if err != nil || len(seed) != ed25519.SeedSize {
		return "", nil, fmt.Errorf("key file %s: private_key must be %d hex bytes", path, ed25519.SeedSize)
	}
	key = ed25519.NewKeyFromSeed(seed)
	if kf.PublicKey != "" && strings.TrimPrefix(kf.PublicKey, "0x") != hex.EncodeToString(key.Public().(ed25519.PublicKey)) {
		return "", nil, fmt.Errorf("key file %s: public_key does not match private_key", path)
	}
	return kf.Name, key, nil
}

// ErrKeyFileMode: a secret key file is readable by group or others.
var ErrKeyFileMode = errors.New("it must not be readable by group or others")

// CheckSecretFileMode refuses a key file that group or others may read: a
// secret that other accounts could read is not secret. The error names the
// file, its mode and the one-line fix.
func CheckSecretFileMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return &KeyModeError{Path: path, Mode: st.Mode().Perm(), Fix: keyModeFix(path, st)}
	}
	return nil
}

func encodeTOML(v any) ([]byte, error) {
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(v); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// keyModeAdvice says how to give the key file at path mode 0600: chmod it
// when this process can (its owner, or root, on a writable file system);
// otherwise set the mode where the file comes from. owner and euid are -1
// when unknown.
func keyModeAdvice(path string, owner, euid int, readOnly bool) string {
	switch {
	case readOnly:
		return fmt.Sprintf("it is on a read-only mount, so it cannot be changed here: give it mode 0600 or 0400 where it comes from "+
			"(on the host before mounting it, or as the secret's mode, e.g. Kubernetes defaultMode 0400), owned by uid %d, the user the sidecar runs as", euid)
	case owner >= 0 && euid > 0 && owner != euid:
		return fmt.Sprintf("it belongs to uid %d, not to uid %d the sidecar runs as: as root, chown %d %s && chmod 600 %s", owner, euid, euid, path, path)
	default:
		return "chmod 600 " + path
	}
}
