package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/tempo/devchain"
)

// The owner's commands against a running dev chain seeded from a committee
// file: list the genesis set, add a validator from its key file,
// deactivate one, and the contract's refusals named.
func TestValidatorsCommand(t *testing.T) {
	dir := t.TempDir()
	keyFiles := make([]string, 3)
	f := committee.File{ChainID: devchain.DefaultChainID, Epoch: 1, QCShards: 16, FeeModel: "native"}
	for i := range keyFiles {
		name := "v" + strconv.Itoa(i)
		keyFiles[i] = filepath.Join(dir, name+".key")
		key, err := committee.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := committee.WriteKeyFile(keyFiles[i], name, key); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			f.Members = append(f.Members, committee.Member{Name: name, PublicKey: hex.EncodeToString(key.Public().(ed25519.PublicKey)), Addrs: []string{"/ip4/127.0.0.1/tcp/400" + strconv.Itoa(i)}})
		}
	}
	committeeFile := filepath.Join(dir, "committee.toml")
	if err := f.Write(committeeFile); err != nil {
		t.Fatal(err)
	}
	genesis, err := devValidatorsFromCommittee(committeeFile)
	if err != nil || len(genesis) != 2 {
		t.Fatalf("validators from the committee file: %v %v", genesis, err)
	}
	dc := testkit.StartDevChain(t, devchain.Config{BlockPeriod: 100 * time.Millisecond, LoadAccounts: -1, Validators: genesis})
	rpc := dc.HTTPEndpoint()

	out, code := runCLI(t, "validators", "list", "--rpc", rpc)
	first := hex.EncodeToString(genesis[0].PublicKey[:])
	if code != 0 || strings.Count(out, "true") != 2 || !strings.Contains(out, first) {
		t.Fatalf("list: %d %s", code, out)
	}
	if out, code := runCLI(t, "validators", "add", "--rpc", rpc, "--key-file", keyFiles[2], "--inbound", "127.0.0.1:4002"); code != 0 || !strings.Contains(out, "added validator") {
		t.Fatalf("add: %d %s", code, out)
	}
	if out, code := runCLI(t, "validators", "deactivate", "--rpc", rpc, first); code != 0 {
		t.Fatalf("deactivate: %d %s", code, out)
	}
	out, code = runCLI(t, "validators", "list", "--rpc", rpc)
	if code != 0 || strings.Count(out, "true") != 2 || strings.Count(out, "false") != 1 || !strings.Contains(out, "127.0.0.1:4002") {
		t.Fatalf("list after add and deactivate: %d %s", code, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"validators", "add", "--rpc", rpc, "--key-file", keyFiles[2]}, "ValidatorAlreadyExists()"},
		{[]string{"validators", "add", "--rpc", rpc}, "exactly one of --key-file and --public-key"},
		{[]string{"validators", "deactivate", "--rpc", rpc, "0x" + strings.Repeat("ab", 32)}, "no validator"},
		{[]string{"validators", "promote", "--rpc", rpc}, "unknown command"},
		{[]string{"validators"}, "want a command"},
	} {
		if out, code := runCLI(t, tc.args...); code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: %d %s (want %q)", tc.args, code, out, tc.want)
		}
	}
}
