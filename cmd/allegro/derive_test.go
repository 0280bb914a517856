package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// The committee of an epoch from a running dev chain and a directory of
// bindings: the genesis committee (three validators, one without a binding,
// a binding of a validator not on chain refused, a tampered file named),
// then, after the owner adds the fourth validator, the committee of the
// next epoch with it while epoch 0 still reads the genesis set.
func TestCommitteeDerive(t *testing.T) {
	dir := t.TempDir()
	bindings := filepath.Join(dir, "bindings")
	if err := os.Mkdir(bindings, 0o755); err != nil {
		t.Fatal(err)
	}
	consensusPub := make([][32]byte, 4)
	sidecarPub := make([]string, 4)
	for i := range 4 {
		ck, sk := filepath.Join(dir, fmt.Sprintf("consensus%d.key", i)), filepath.Join(dir, fmt.Sprintf("sidecar%d.key", i))
		for _, p := range []string{ck, sk} {
			if out, code := runCLI(t, "keygen", "--out", p); code != 0 {
				t.Fatalf("keygen: %s", out)
			}
		}
		_, key, err := committee.LoadKeyFile(ck)
		if err != nil {
			t.Fatal(err)
		}
		consensusPub[i] = [32]byte(key.Public().(ed25519.PublicKey))
		_, key, err = committee.LoadKeyFile(sk)
		if err != nil {
			t.Fatal(err)
		}
		sidecarPub[i] = hex.EncodeToString(key.Public().(ed25519.PublicKey))
		if i == 2 {
			continue // validator 2 never binds a sidecar key
		}
		out := filepath.Join(bindings, fmt.Sprintf("v%d.toml", i))
		if o, code := runCLI(t, "bind", "--consensus-key", ck, "--sidecar-key", sk, "--chain-id", "1337", "--first-epoch", "0", "--out", out); code != 0 {
			t.Fatalf("bind: %s", o)
		}
	}
	if err := os.WriteFile(filepath.Join(bindings, "junk.toml"), []byte("chain_id = 1337\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	genesis := make([]tempo.Validator, 3)
	for i := range genesis {
		genesis[i] = tempo.Validator{PublicKey: consensusPub[i], Active: true, ValidatorAddress: common.Address{0xA0 + byte(i), 0xBC}}
	}
	dc := testkit.StartDevChain(t, devchain.Config{BlockPeriod: 100 * time.Millisecond, LoadAccounts: -1, Validators: genesis})
	rpc := dc.HTTPEndpoint()
	const length = 5
	derive := func(args ...string) (string, int) {
		return runCLI(t, append([]string{"committee", "derive", "--chain", rpc, "--chain-id", "1337", "--epoch-length", strconv.Itoa(length),
			"--bindings", bindings}, args...)...)
	}

	out, code := derive("--epoch", "0")
	if code != 0 {
		t.Fatalf("derive epoch 0: %d %s", code, out)
	}
	for _, want := range []string{
		"chain 1337, epoch 0: blocks from 0", "validator set after block 0", "n 3, f 0, quorum 3; 2 of 3 seats can sign",
		"v0-a0bc0000", sidecarPub[0], sidecarPub[1], "unbound seats (1): count in n but cannot sign until a binding takes effect: v2-a2bc0000",
		"refused bindings (2):", "binding's consensus key is not an active validator: " + hex.EncodeToString(consensusPub[3][:4]), "junk.toml",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("derive epoch 0: no %q in\n%s", want, out)
		}
	}
	if strings.Count(out, sidecarPub[3]) != 1 { // only in its refusal
		t.Errorf("validator 3's sidecar key is a member:\n%s", out)
	}

	// The owner adds validator 3; the first committee read after the block
	// that added it has four seats.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ec, err := ethclient.DialContext(ctx, rpc)
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	data, err := tempo.AddValidatorCalldata(tempo.Validator{PublicKey: consensusPub[3], Active: true, ValidatorAddress: common.Address{0xA3, 0xBC}})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := devkit.SignCall(devkit.ValidatorConfigOwner().Key, 0, tempo.ValidatorConfigAddress, data, dc.ChainID(), 0, devkit.Fees{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ec.SendTransaction(ctx, tx); err != nil {
		t.Fatal(err)
	}
	var added uint64
	testkit.Eventually(t, 20*time.Second, "the owner's addValidator included", func() bool {
		r, err := ec.TransactionReceipt(ctx, tx.Hash())
		if err != nil {
			return false
		}
		if r.Status != 1 {
			t.Fatalf("addValidator reverted: %+v", r)
		}
		added = r.BlockNumber.Uint64()
		return true
	})
	next := (added + 1 + length - 1) / length // the first epoch whose committee block is at or after it
	testkit.Eventually(t, 20*time.Second, "the chain reaches the next epoch", func() bool {
		h, err := ec.BlockNumber(ctx)
		return err == nil && h >= next*length
	})
	for _, args := range [][]string{{"--epoch", strconv.FormatUint(next, 10)}, nil} { // nil: the current epoch
		out, code = derive(args...)
		if code != 0 || !strings.Contains(out, "n 4, f 1, quorum 3; 3 of 4 seats can sign") || !strings.Contains(out, "v3-a3bc0000") ||
			!strings.Contains(out, sidecarPub[3]) || strings.Contains(out, "refused bindings (2)") {
			t.Fatalf("derive %v after the validator was added: %d\n%s", args, code, out)
		}
	}
	if out, code = derive("--epoch", "0"); code != 0 || !strings.Contains(out, "n 3, f 0, quorum 3") {
		t.Fatalf("epoch 0 read again: %d\n%s", code, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"committee", "derive", "--chain", rpc, "--chain-id", "1337", "--epoch-length", "5", "--epoch", "1000000"}, "the committee of epoch 1000000 is read after block 4999999"},
		{[]string{"committee", "derive", "--chain", rpc, "--chain-id", "1337", "--epoch-length", "5", "--epoch", "soon"}, `want a number or "current"`},
		{[]string{"committee", "derive", "--chain", rpc, "--chain-id", "1337"}, "--epoch-length is required"},
		{[]string{"committee", "derive", "--chain-id", "1337", "--epoch-length", "5"}, "--chain is required"},
		{[]string{"committee", "derive", "--chain", rpc, "--chain-id", "4217", "--epoch-length", "5", "--timeout", "5s"}, "chain id"},
		{[]string{"committee", "derive", "--chain", rpc, "--chain-id", "1337", "--epoch-length", "5", "--bindings", filepath.Join(dir, "none")}, "no such file"},
	} {
		if out, code := runCLI(t, tc.args...); code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: %d %s (want %q)", tc.args[1:], code, out, tc.want)
		}
	}
}
