package committee

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/allegro-mesh/allegro/qc"
)

// A directory of binding files: the good ones load, a tampered one is
// named apart with its reason, other files are left alone.
func TestLoadBindings(t *testing.T) {
	f := newDeriveFixture(t)
	dir := t.TempDir()
	for i, name := range []string{"v0.toml", "v1.toml", "v2.toml"} {
		if err := WriteBinding(filepath.Join(dir, name), f.bindings[i]); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "v2.toml"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := strings.Replace(string(raw), "first_epoch = 1", "first_epoch = 2", 1)
	if tampered == string(raw) {
		t.Fatal("fixture: first_epoch not found")
	}
	if err := os.WriteFile(filepath.Join(dir, "v2.toml"), []byte(tampered), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"README.md": "not a binding", ".hidden.toml": "junk ="} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "old.toml"), 0o755); err != nil {
		t.Fatal(err)
	}

	got, bad, err := LoadBindings(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != f.bindings[0] || got[1] != f.bindings[1] {
		t.Fatalf("loaded %+v", got)
	}
	if len(bad) != 1 || filepath.Base(bad[0].Path) != "v2.toml" || !errors.Is(bad[0], qc.ErrBindingSignature) || !strings.Contains(bad[0].Error(), "v2.toml") {
		t.Fatalf("bad files %+v", bad)
	}

	// One file: loaded, or an error.
	if one, bad, err := LoadBindings(filepath.Join(dir, "v1.toml")); err != nil || len(one) != 1 || one[0] != f.bindings[1] || len(bad) != 0 {
		t.Fatalf("one file: %+v %+v %v", one, bad, err)
	}
	if _, _, err := LoadBindings(filepath.Join(dir, "v2.toml")); !errors.Is(err, qc.ErrBindingSignature) {
		t.Fatalf("one tampered file: %v", err)
	}
	if _, _, err := LoadBindings(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing path: %v", err)
	}
	// An empty directory holds no bindings: every seat is unbound.
	if none, bad, err := LoadBindings(t.TempDir()); err != nil || len(none)+len(bad) != 0 {
		t.Fatalf("empty directory: %v %v %v", none, bad, err)
	}
}
