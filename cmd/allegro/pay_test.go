package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

func payRun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return payRunCmd(t, "pay", args...)
}

func payRunCmd(t *testing.T, cmd string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code = app.Run(ctx, append([]string{cmd}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

// TestPayCommand runs `allegro pay` against an in-process cluster of four
// sidecars: a payment with its certificates and QC, a chained Tempo payment
// spending the received funds through a fallback sidecar, wallet nonces, and
// errors.
func TestPayCommand(t *testing.T) {
	accts := devkit.DemoAccounts()
	alice, bob, carol := accts[0], accts[1], accts[2]
	chain := tempo.NewMemChain()
	for _, a := range accts {
		chain.SetBalance(devkit.TokenAddress, a.Address, new(big.Int).SetUint64(a.Tokens))
	}
	chain.SetHead(10)
	t.Setenv(payKeyEnv, "")
	cl := nodetest.New(t, 4, devchain.DefaultChainID, chain)
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	dir := t.TempDir()
	committeePath := filepath.Join(dir, "committee.toml")
	if err := cl.Committee.Write(committeePath); err != nil {
		t.Fatal(err)
	}
	committee, err := cl.Committee.Committee()
	if err != nil {
		t.Fatal(err)
	}
	ep := func(i int) string { return cl.Nodes[i].API.Addr().String() }

	// Alice pays Bob 10 of her 15 dollars.
	qcPath := filepath.Join(dir, "alice-bob.qc")
	out, errOut, code := payRun(t, "--sidecar", ep(0), "--committee", committeePath,
		"--from", "alice", "--to", "bob", "--amount", "10", "--qc-out", qcPath)
	if code != 0 {
		t.Fatalf("pay: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("allegro pay:\n%s", out)
	for _, want := range []string{
		"alice " + alice.Address.Hex(), "bob " + bob.Address.Hex(), "10 dollars (10000000 units)", "EVM nonce 0",
		"accepted by " + ep(0), "certificate 1/3", "certificate 3/3", "\nQC 0x", "signers     ", "(3 of 4, quorum 3; verified)", "time to QC", "QC written to " + qcPath,
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	// Every certificate line names a committee member and a time.
	certLine := regexp.MustCompile(`certificate \d/3  v[0-3] .* \+\d+\.\d ms`)
	if n := len(certLine.FindAllString(out, -1)); n < 3 {
		t.Fatalf("%d certificate lines:\n%s", n, out)
	}
	text, err := os.ReadFile(qcPath)
	if err != nil {
		t.Fatal(err)
	}
	parent, err := client.DecodeQCHex(string(text), committee)
	if err != nil {
		t.Fatalf("--qc-out file: %v", err)
	}
	if !strings.Contains(out, "QC "+parent.Hash.Hex()) {
		t.Fatal("the printed QC differs from the written one")
	}

	// Bob (5 dollars on chain) spends 12 with Alice's QC as parent, in a
	// Tempo transaction on nonce key 3, his key read from a file; the first
	// sidecar given is down.
	bobKey := filepath.Join(dir, "bob.key")
	if err := os.WriteFile(bobKey, []byte("0x"+hex.EncodeToString(crypto.FromECDSA(bob.Key))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	out, errOut, code = payRun(t, "--sidecar", dead, "--sidecar", ep(2), "--committee", committeePath,
		"--key-file", bobKey, "--to", carol.Address.Hex(), "--units", "12000000", "--parent-qc", qcPath,
		"--format", "tempo", "--nonce-key", "3", "--memo", "coffee")
	if code != 0 {
		t.Fatalf("chained pay: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("chained allegro pay:\n%s", out)
	for _, want := range []string{"parent QC " + parent.Hash.Hex(), bob.Address.Hex() + " → carol", "TEMPO nonce 0 key 3", "attempt 1 at " + dead + " failed", "certificate 3/3", "via " + ep(2) + " (attempt 2)"} {
		if !strings.Contains(out, want) {
			t.Fatalf("chained output lacks %q:\n%s", want, out)
		}
	}

	// Carol pays twice from a wallet, her key in the environment: nonces 0
	// and 1, durably reserved.
	walletPath := filepath.Join(dir, "carol.wallet")
	t.Setenv(payKeyEnv, hex.EncodeToString(crypto.FromECDSA(carol.Key)))
	for i, want := range []string{"EVM nonce 0", "EVM nonce 1"} {
		out, errOut, code = payRun(t, "--sidecar", ep(1), "--committee", committeePath,
			"--to", "alice", "--amount", "0.5", "--wallet", walletPath)
		if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "0.5 dollars (500000 units)") || !strings.Contains(out, "\nQC 0x") {
			t.Fatalf("wallet payment %d: exit %d\n%s%s", i, code, out, errOut)
		}
	}
	t.Setenv(payKeyEnv, "")

	// A reject is reported with its code; usage errors exit 2.
	out, errOut, code = payRun(t, "--sidecar", ep(3), "--committee", committeePath,
		"--from", "load7", "--to", "bob", "--amount", "1", "--nonce", "0")
	if code != 1 || !strings.Contains(errOut, "INSUFFICIENT_FUNDS") {
		t.Fatalf("unfunded payer: exit %d\n%s%s", code, out, errOut)
	}
	for _, args := range [][]string{
		{"--committee", committeePath, "--from", "alice", "--to", "bob", "--amount", "1"},
		{"--sidecar", ep(0), "--committee", committeePath, "--from", "alice", "--to", "bob"},
		{"--sidecar", ep(0), "--committee", committeePath, "--from", "alice", "--to", "bob", "--amount", "1.0000001"},
		{"--sidecar", ep(0), "--committee", committeePath, "--from", "alice", "--to", "bob", "--amount", "1", "--nonce", "1", "--wallet", walletPath},
		{"--sidecar", ep(0), "--committee", committeePath, "--from", "alice", "--to", "bob", "--amount", "1", "--format", "evm", "--nonce-key", "2"},
		{"--sidecar", ep(0), "--committee", committeePath, "--from", "0x" + hex.EncodeToString(crypto.FromECDSA(alice.Key)), "--to", "bob", "--amount", "1"},
		{"--sidecar", ep(0), "--committee", committeePath, "--to", "bob", "--amount", "1"},
	} {
		if _, errOut, code := payRun(t, args...); code != 2 {
			t.Fatalf("%v: exit %d, want 2\n%s", args, code, errOut)
		}
	}
	if _, errOut, code := payRun(t, "--sidecar", ep(0), "--committee", committeePath, "--from", "mallory", "--to", "bob", "--amount", "1"); code != 1 || !strings.Contains(errOut, "mallory") {
		t.Fatalf("unknown payer: exit %d\n%s", code, errOut)
	}
}

func TestPayParseDollars(t *testing.T) {
	for in, want := range map[string]uint64{"10": 10_000_000, "0.5": 500_000, ".25": 250_000, "1.000001": 1_000_001, "7.": 7_000_000} {
		if got, err := payParseDollars(in); err != nil || got != want {
			t.Errorf("%q: %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", ".", "-1", "1.0000001", "1e3", "99999999999999999999", "1,5"} {
		if _, err := payParseDollars(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	if got := payDollars(12_500_000); got != "12.5 dollars" {
		t.Errorf("payDollars: %q", got)
	}
	if a, ok := payDevAccount("load-0"); !ok || a.Address.Hex() != "0x5C83D6c3b3bC921331F531d55F0AbAD51B8B6275" {
		t.Errorf("load-0: %v %s", ok, a.Address.Hex())
	}
	if _, ok := payDevAccount("load01"); ok {
		t.Error("load01 accepted")
	}
}

// TestPayLoadKey covers every source of the payer's key: a file, the
// environment, a development account name, and the refusals (two sources,
// none, bad hex, a key file others can read, a key in argv).
func TestPayLoadKey(t *testing.T) {
	alice := devkit.DemoAccounts()[0]
	keyHex := hex.EncodeToString(crypto.FromECDSA(alice.Key))
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good0x := write("good0x.key", "0x"+keyHex+"\n", 0o600)
	goodBare := write("good.key", keyHex, 0o400)
	crlf := write("crlf.key", keyHex+"\r\n", 0o600)
	badHex := write("bad.key", strings.Repeat("zz", 32)+"\n", 0o600)
	short := write("short.key", keyHex[:60], 0o600)
	open := write("open.key", keyHex+"\n", 0o644)

	for _, tc := range []struct {
		name          string
		from, file    string
		env           string
		wantErr       string // "" for success
		wantSourceErr bool   // a usage error (errPayKeySource)
	}{
		{name: "file with 0x and newline", file: good0x},
		{name: "file bare hex", file: goodBare},
		{name: "file with CRLF", file: crlf},
		{name: "env", env: "0x" + keyHex},
		{name: "env bare hex with newline", env: keyHex + "\n"},
		{name: "dev account", from: "alice"},
		{name: "file and env", file: good0x, env: keyHex, wantErr: "--key-file and ALLEGRO_PAY_KEY", wantSourceErr: true},
		{name: "from and env", from: "bob", env: keyHex, wantErr: "--from and ALLEGRO_PAY_KEY", wantSourceErr: true},
		{name: "neither", wantErr: "--key-file FILE or ALLEGRO_PAY_KEY", wantSourceErr: true},
		{name: "key in argv", from: "0x" + keyHex, wantErr: "not a private key", wantSourceErr: true},
		{name: "bad hex file", file: badHex, wantErr: "not a secp256k1 private key in hex"},
		{name: "short file", file: short, wantErr: "64 hex digits"},
		{name: "bad hex env", env: "0x1234", wantErr: "ALLEGRO_PAY_KEY: want a secp256k1"},
		{name: "group-readable file", file: open, wantErr: "chmod 600 " + open},
		{name: "missing file", file: filepath.Join(dir, "none.key"), wantErr: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == payKeyEnv {
					return tc.env
				}
				return ""
			}
			key, name, err := payLoadKey(tc.from, tc.file, getenv)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if crypto.PubkeyToAddress(key.PublicKey) != alice.Address || !strings.Contains(name, alice.Address.Hex()) {
					t.Fatalf("key of %s (%q), want alice %s", crypto.PubkeyToAddress(key.PublicKey), name, alice.Address)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
			}
			if errors.Is(err, errPayKeySource) != tc.wantSourceErr {
				t.Fatalf("usage error %v, want %v: %v", !tc.wantSourceErr, tc.wantSourceErr, err)
			}
			if strings.Contains(err.Error(), keyHex) {
				t.Fatalf("the error repeats the key: %v", err)
			}
			if tc.name == "group-readable file" && !errors.Is(err, committee.ErrKeyFileMode) {
				t.Fatalf("not ErrKeyFileMode: %v", err)
			}
		})
	}
}
