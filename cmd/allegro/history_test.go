package main

import (
	"context"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// TestHistoryMove moves a validator that signed a payment to a new data
// directory with allegro history export and import: the export is refused
// while the sidecar runs, an import into a directory with history is
// refused, and the moved validator refuses a conflicting payment (another
// transaction for the signed contention key) that the same key on an empty
// data directory signs.
func TestHistoryMove(t *testing.T) {
	accts := devkit.DemoAccounts()
	alice, bob, carol := accts[0], accts[1], accts[2]
	chain := tempo.NewMemChain()
	for _, a := range accts {
		chain.SetBalance(devkit.TokenAddress, a.Address, new(big.Int).SetUint64(a.Tokens))
	}
	chain.SetHead(10)
	cl := nodetest.New(t, 4, devchain.DefaultChainID, chain)
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)

	expiry := client.WithExpiryAt(time.Now().Add(time.Hour))
	signed, err := client.NewEVMPayment(alice.Key, devchain.DefaultChainID, 0, devkit.TokenAddress, bob.Address, 1_000_000, expiry)
	if err != nil {
		t.Fatal(err)
	}
	conflicting, err := client.NewEVMPayment(alice.Key, devchain.DefaultChainID, 0, devkit.TokenAddress, carol.Address, 2_000_000, expiry)
	if err != nil {
		t.Fatal(err)
	}
	cl.PayToQC(0, signed, 20*time.Second)

	dir := t.TempDir()
	oldDir, newDir, emptyDir := cl.DataDir(0), filepath.Join(dir, "moved"), filepath.Join(dir, "empty")
	export := filepath.Join(dir, "v0.history")
	history := func(args ...string) (string, string, int) { return payRunCmd(t, "history", args...) }

	out, errOut, code := history("export", "--data-dir", oldDir, "--out", export)
	if code != 1 || !strings.Contains(errOut, "state store locked") || !strings.Contains(errOut, "in use by another sidecar") {
		t.Fatalf("export from a running sidecar: exit %d\n%s%s", code, out, errOut)
	}
	cl.Stop(0)
	out, errOut, code = history("export", "--data-dir", oldDir, "--out", export)
	t.Logf("export: %s", out)
	signer := cl.Committee.Members[0].PublicKey
	if code != 0 || !strings.Contains(out, "1 unsettled signatures") || !strings.Contains(out, "signed by 0x"+signer) {
		t.Fatalf("export: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = history("export", "--data-dir", oldDir, "--out", export); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("export over an existing file: exit %d\n%s", code, errOut)
	}
	if out, errOut, code = history("import", "--data-dir", newDir, "--in", export); code != 0 || !strings.Contains(out, "1 unsettled signatures") {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = history("import", "--data-dir", newDir, "--in", export); code != 1 || !strings.Contains(errOut, "already holds signing history") {
		t.Fatalf("second import: exit %d\n%s", code, errOut)
	}
	if _, _, code = history("import", "--data-dir", newDir); code != 2 {
		t.Fatalf("import without --in: exit %d, want 2", code)
	}

	submit := func() *fastpayv1.SubmitFastPayResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := cl.Client(0).SubmitFastPay(ctx, conflicting)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	cl.SetDataDir(0, newDir)
	cl.Start(0)
	if resp := submit(); resp.GetReject().GetCode() != fastpayv1.RejectCode_EQUIVOCATION {
		t.Fatalf("the moved validator answered the conflicting payment with %v, want EQUIVOCATION", resp)
	}

	// The control: the same key on an empty data directory signs it.
	cl.Stop(0)
	cl.SetDataDir(0, emptyDir)
	cl.Start(0)
	if resp := submit(); resp.GetCert() == nil {
		t.Fatalf("the validator without history answered the conflicting payment with %v, want a certificate", resp)
	}
}
