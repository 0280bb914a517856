package devnet

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// TestDevnetEpochs: a devnet whose committees come from its dev chain; the
// spare validator joins the committee once its consensus key is added to
// the chain's set while the devnet runs.
func TestDevnetEpochs(t *testing.T) {
	if testing.Short() {
		t.Skip("a dev chain and five sidecars")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := Start(ctx, Config{Dir: t.TempDir(), BlockPeriod: 100 * time.Millisecond, EpochLength: 20, Spares: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	testkit.Eventually(t, 30*time.Second, "four validators running", func() bool { return len(d.Nodes()) == 4 })
	if d.Runners[4].Node() != nil {
		t.Fatal("the spare runs a node before it is on chain")
	}

	// The chain's owner adds the spare's consensus key.
	_, key, err := committee.LoadKeyFile(filepath.Join(d.Config.Dir, "validator-4", "consensus.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AddValidator(ctx, [32]byte(key.Public().(ed25519.PublicKey))); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 60*time.Second, "the spare in the committee, signing", func() bool {
		n := d.Runners[4].Node()
		if n == nil {
			return false
		}
		select {
		case <-n.Sidecar.HandoverDone():
			return n.Sidecar.Validator().Committee().N() == 5
		default:
			return false
		}
	})
}

// TestDemoWithEpochs: the chained-payment demo on a devnet whose committees
// come from the chain and change every few seconds; the wallet and Carol's
// light client follow the epochs.
func TestDemoWithEpochs(t *testing.T) {
	if testing.Short() {
		t.Skip("a dev chain, four sidecars and the demo")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := Start(ctx, Config{Dir: t.TempDir(), BlockPeriod: 200 * time.Millisecond, EpochLength: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	testkit.Eventually(t, 30*time.Second, "four validators running", func() bool { return len(d.Nodes()) == 4 })
	var out bytes.Buffer
	rep, err := RunDemo(ctx, d.Target(), &out)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if rep.CarolSaw.TxHash != rep.QC2.TxHash || rep.QC1.Epoch == 0 || rep.QC2.Epoch < rep.QC1.Epoch {
		t.Fatalf("QC1 of epoch %d, QC2 of epoch %d, Carol saw %s", rep.QC1.Epoch, rep.QC2.Epoch, rep.CarolSaw.TxHash)
	}
	want := map[string]uint64{"alice": 5 * devkit.Dollar, "bob": 5 * devkit.Dollar, "carol": 15 * devkit.Dollar}
	for name, amount := range want {
		if rep.Balances[name] != amount {
			t.Fatalf("final balances %v, want %v", rep.Balances, want)
		}
	}
}
