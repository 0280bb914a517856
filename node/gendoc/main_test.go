package main

import (
	"bytes"
	"os"
	"testing"
)

// TestGeneratedUpToDate fails when node/configdoc_gen.go differs from the
// settings' comments: run go generate ./node.
func TestGeneratedUpToDate(t *testing.T) {
	t.Chdir("..")
	want, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("configdoc_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("node/configdoc_gen.go is stale: run go generate ./node")
	}
	if !bytes.Contains(got, []byte(`"chain.backoff_max":`)) || !bytes.Contains(got, []byte(`"p2p.scoring.retain_score":`)) {
		t.Fatal("nested and shared-comment settings are missing")
	}
}
