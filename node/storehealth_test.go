package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStoreHealth: the store is reported usable while open with its
// directory present, and not once closed or once the directory is gone.
func TestStoreHealth(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b := &backend{store: &storeState{dir: dir}}
	if err := b.StoreHealth(); err != nil {
		t.Fatalf("open store: %v", err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := b.StoreHealth(); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("directory gone: %v", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b.store.closed.Store(true)
	if err := b.StoreHealth(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("closed store: %v", err)
	}
}
