package testnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/allegro-mesh/allegro/committee"
)

// InstalledKeyFile is the name of a validator's key inside its data volume,
// where the key installer puts it and the sidecar reads it.
const InstalledKeyFile = "validator.key"

// InstallKeys copies validator name's key from keysDir/<name>.key to
// intoDir/<name>/validator.key for each name, with mode 0600 and owned by
// the user running it, checking that each is a valid key file of that
// validator. A testnet runs it as a one-shot container (the same user as
// the sidecars) writing into the sidecars' data volumes before they start:
// the sidecars refuse key files readable by group or others, and a key
// bind-mounted from the host keeps whatever mode it has there (a git
// checkout or a plain copy gives 0644).
func InstallKeys(keysDir, intoDir string, names []string) error {
	if len(names) == 0 {
		return errors.New("testnet: no validator names to install keys for")
	}
	for _, name := range names {
		if _, ok := validatorIndex(name); !ok {
			return fmt.Errorf("testnet: %q is not a validator name (v1, v2, ...)", name)
		}
		if err := installKey(filepath.Join(keysDir, name+".key"), filepath.Join(intoDir, name), name); err != nil {
			return err
		}
	}
	return nil
}

func installKey(src, dir, name string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("testnet: read key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".validator.key-*")
	if err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing is left to remove
	// CreateTemp makes the file 0600; set it anyway, whatever the umask.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("testnet: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("testnet: write key %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	got, _, err := committee.LoadKeyFile(tmp.Name())
	if err != nil {
		return fmt.Errorf("testnet: %s: %w", src, err)
	}
	if got != name {
		return fmt.Errorf("testnet: %s holds the key of %q, not %q", src, got, name)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, InstalledKeyFile)); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	return nil
}

// InstallBindings copies every binding file (*.toml) of bindingsDir into
// intoDir/<name>/bindings for each name: a sidecar's default bindings
// directory, where it also keeps the bindings it pulls from its peers.
func InstallBindings(bindingsDir, intoDir string, names []string) error {
	files, err := filepath.Glob(filepath.Join(bindingsDir, "*.toml"))
	if err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	if len(files) == 0 {
		return fmt.Errorf("testnet: no binding files (*.toml) in %s", bindingsDir)
	}
	for _, name := range names {
		if _, ok := validatorIndex(name); !ok {
			return fmt.Errorf("testnet: %q is not a validator name (v1, v2, ...)", name)
		}
		dir := filepath.Join(intoDir, name, "bindings")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("testnet: %w", err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("testnet: read binding: %w", err)
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o600); err != nil {
				return fmt.Errorf("testnet: install binding: %w", err)
			}
		}
	}
	return nil
}
