package main

import (
	"encoding/hex"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

func statusRun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	out, errOut, code := payRunCmd(t, "status", args...)
	return out, errOut, code
}

// TestPayQuorumOutOfReach pays while only two of four validators run (the
// quorum is three): pay says in plain words that the payment was submitted
// and may still complete, exits 3 (a reject exits 1), and shows no transport
// error. Once the stopped validators return, allegro status shows the QC,
// and the next pay with the same wallet finds the payment certified through
// a sidecar and uses the next nonce.
func TestPayQuorumOutOfReach(t *testing.T) {
	t.Setenv(payKeyEnv, "")
	accts := devkit.DemoAccounts()
	carol := accts[2]
	chain := tempo.NewMemChain()
	for _, a := range accts {
		chain.SetBalance(devkit.TokenAddress, a.Address, new(big.Int).SetUint64(a.Tokens))
	}
	chain.SetHead(10)
	cl := nodetest.New(t, 4, devchain.DefaultChainID, chain)
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	dir := t.TempDir()
	committeePath := filepath.Join(dir, "committee.toml")
	if err := cl.Committee.Write(committeePath); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "carol.key")
	if err := os.WriteFile(keyPath, []byte(hex.EncodeToString(crypto.FromECDSA(carol.Key))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ep := func(i int) string { return cl.Nodes[i].API.Addr().String() }
	ep0, ep1 := ep(0), ep(1)
	walletPath := filepath.Join(dir, "carol.wallet")
	pay := func() (string, string, int) {
		return payRun(t, "--sidecar", ep0, "--sidecar", ep1, "--committee", committeePath, "--key-file", keyPath,
			"--to", "alice", "--amount", "0.5", "--wallet", walletPath, "--timeout", "2s", "--retries", "0")
	}

	cl.Stop(2)
	cl.Stop(3)
	out, errOut, code := pay()
	t.Logf("pay without a quorum: exit %d\n%s%s", code, out, errOut)
	if code != payExitPending {
		t.Fatalf("exit %d, want %d", code, payExitPending)
	}
	for _, want := range []string{"EVM nonce 0", "of 3 certificates so far; the QC has not formed yet — the payment may still complete",
		"follow it: allegro status --sidecar " + ep0 + " --sidecar " + ep1, "keeps it pending at nonce 0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q", want)
		}
	}
	if !strings.Contains(errOut, "is not certified yet (it may still complete)") {
		t.Fatalf("stderr: %q", errOut)
	}
	for _, raw := range []string{"RST_STREAM", "rpc error", "code = ", "DeadlineExceeded"} {
		if strings.Contains(out+errOut, raw) {
			t.Fatalf("the output shows the transport error (%q)", raw)
		}
	}
	m := regexp.MustCompile(`submitted as tx (0x[0-9a-f]{64}); ([0-9]) of 3`).FindStringSubmatch(out)
	if m == nil || m[2] == "0" || m[2] == "3" {
		t.Fatalf("no tx hash or a certificate count outside 1..2 in the output: %v", m)
	}
	tx := m[1]

	out, errOut, code = statusRun(t, "--sidecar", ep0, "--committee", committeePath, tx)
	if code != 0 || !strings.Contains(out, "QC            not formed yet") || !strings.Contains(out, "stage         ACCEPTED") {
		t.Fatalf("status without a quorum: exit %d\n%s%s", code, out, errOut)
	}

	unknown := "0x" + strings.Repeat("ab", 32)
	if _, errOut, code := statusRun(t, "--sidecar", ep0, "--committee", committeePath, unknown); code != 1 || !strings.Contains(errOut, "not known to the sidecars asked") {
		t.Fatalf("status of an unknown tx: exit %d\n%s", code, errOut)
	}
	if _, _, code := statusRun(t, "--sidecar", ep0, "--committee", committeePath, "0x12"); code != 2 {
		t.Fatalf("status of a short hash: exit %d, want 2", code)
	}

	cl.Start(2)
	cl.Start(3)
	testkit.Eventually(t, 20*time.Second, "allegro status shows the QC", func() bool {
		out, _, code = statusRun(t, "--sidecar", ep0, "--committee", committeePath, tx)
		return code == 0 && regexp.MustCompile(`QC            0x[0-9a-f]{64}`).MatchString(out)
	})
	t.Logf("allegro status after the quorum returned:\n%s", out)
	if !strings.Contains(out, "certificates  ") || !strings.Contains(out, "settlement    ") {
		t.Fatalf("status output:\n%s", out)
	}

	out, errOut, code = pay()
	t.Logf("the next pay:\n%s%s", out, errOut)
	if code != 0 || !strings.Contains(out, "the pending payment at nonce 0 (tx "+tx+") has its QC") ||
		!strings.Contains(out, "EVM nonce 1") || strings.Contains(out+errOut, "NONCE_SEQ_TOO_LOW") {
		t.Fatalf("next pay: exit %d", code)
	}

	// A payment no sidecar could be asked about is reported as possibly
	// never submitted, with the same exit status.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	out, errOut, code = payRun(t, "--sidecar", dead, "--committee", committeePath, "--key-file", keyPath,
		"--to", "alice", "--amount", "0.5", "--nonce", "7", "--timeout", "2s", "--retries", "0")
	if code != payExitPending || !strings.Contains(out, "no sidecar confirmed receiving it (no sidecar could be asked); it may not have been submitted") ||
		strings.Contains(out+errOut, "rpc error") {
		t.Fatalf("unreachable sidecar: exit %d\n%s%s", code, out, errOut)
	}

	// A reject is final: exit 1, and the wallet frees the refused nonce
	// (no sidecar knows the transaction), so the next payment takes it.
	load7 := devkit.DeterministicKey("allegro-load-7")
	load7Path := filepath.Join(dir, "load7.key")
	if err := os.WriteFile(load7Path, []byte(hex.EncodeToString(crypto.FromECDSA(load7))), 0o600); err != nil {
		t.Fatal(err)
	}
	load7Wallet := filepath.Join(dir, "load7.wallet")
	for range 2 {
		out, errOut, code = payRun(t, "--sidecar", ep0, "--committee", committeePath, "--key-file", load7Path,
			"--to", "alice", "--amount", "1", "--wallet", load7Wallet)
		if code != 1 || !strings.Contains(errOut, "INSUFFICIENT_FUNDS") || !strings.Contains(out, "EVM nonce 0") || !strings.Contains(out, "nonce 0 is free again") {
			t.Fatalf("unfunded payer: exit %d\n%s%s", code, out, errOut)
		}
	}
}
