package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/qc"
)

func TestBind(t *testing.T) {
	dir := t.TempDir()
	consensus, sidecarKey := filepath.Join(dir, "consensus.key"), filepath.Join(dir, "sidecar.key")
	for _, p := range []string{consensus, sidecarKey} {
		if out, code := runCLI(t, "keygen", "--out", p); code != 0 {
			t.Fatalf("keygen: %s", out)
		}
	}
	out := filepath.Join(dir, "binding.toml")
	if o, code := runCLI(t, "bind", "--consensus-key", consensus, "--sidecar-key", sidecarKey, "--chain-id", "1337", "--first-epoch", "3", "--out", out); code != 0 || !strings.Contains(o, "from epoch 3") {
		t.Fatalf("bind: %d %s", code, o)
	}
	b, err := committee.LoadBinding(out)
	if err != nil {
		t.Fatal(err)
	}
	_, ck, _ := committee.LoadKeyFile(consensus)
	_, sk, _ := committee.LoadKeyFile(sidecarKey)
	if !b.ConsensusKey.PublicKey().Equal(ck.Public()) {
		t.Fatalf("consensus key %x", b.ConsensusKey)
	}
	if !b.SidecarKey.PublicKey().Equal(sk.Public()) || b.FirstEpoch != 3 || b.ChainID != 1337 {
		t.Fatalf("binding %+v", b)
	}
	if err := qc.CheckBinding(&b, 4217, func(qc.ValidatorID) bool { return true }); !errors.Is(err, qc.ErrBindingChain) {
		t.Fatalf("binding used on another chain: %v", err)
	}

	// An edited binding no longer verifies.
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	edited := filepath.Join(dir, "edited.toml")
	if err := os.WriteFile(edited, []byte(strings.Replace(string(raw), "first_epoch = 3", "first_epoch = 2", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := committee.LoadBinding(edited); !errors.Is(err, qc.ErrBindingSignature) {
		t.Fatalf("edited binding: %v", err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bind", "--consensus-key", consensus, "--sidecar-key", consensus, "--chain-id", "1337", "--first-epoch", "3", "--out", filepath.Join(dir, "self.toml")}, "consensus key itself"},
		{[]string{"bind", "--consensus-key", consensus, "--sidecar-key", sidecarKey, "--chain-id", "1337", "--first-epoch", "3", "--out", out}, "exists"},
		{[]string{"bind", "--consensus-key", consensus, "--chain-id", "1337", "--first-epoch", "3"}, "--sidecar-key"},
		{[]string{"bind", "--consensus-key", consensus, "--sidecar-key", sidecarKey, "--first-epoch", "3"}, "--chain-id"},
		{[]string{"bind", "--consensus-key", consensus, "--sidecar-key", sidecarKey, "--chain-id", "1337"}, "--first-epoch"},
	} {
		if o, code := runCLI(t, tc.args...); code == 0 || !strings.Contains(o, tc.want) {
			t.Errorf("%v: %d %s (want %q)", tc.args[1:], code, o, tc.want)
		}
	}
}
