package devnet

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// TestDemo runs the chained-payment demo end to end on an in-process
// devnet: dev chain, four sidecars, the wallet client and Carol's light
// client.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// A block period long enough that both QCs certainly form within one.
	d, err := Start(ctx, Config{Dir: t.TempDir(), BlockPeriod: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())

	var out bytes.Buffer
	rep, err := RunDemo(ctx, d.Target(), &out)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	for i, q := range []*qc.QC{rep.QC1, rep.QC2} {
		if err := d.Committee.VerifyQC(q); err != nil {
			t.Fatalf("QC%d does not verify: %v", i+1, err)
		}
	}
	if !rep.QCsBeforeBlock() {
		t.Fatalf("QCs at heights %d and %d, chain was at %d: not both before the next block", rep.HeightAtQC1, rep.HeightAtQC2, rep.HeightAtStart)
	}
	if rep.CarolSaw.TxHash != rep.QC2.TxHash || rep.CarolSaw.Amount != 10*devkit.Dollar {
		t.Fatalf("Carol's light client saw %+v", rep.CarolSaw)
	}
	if err := d.Committee.VerifyQC(rep.CarolSaw.QC); err != nil {
		t.Fatalf("light client's QC does not verify: %v", err)
	}
	if rep.Settled2 < rep.Settled1 || rep.Settled1 <= rep.HeightAtStart {
		t.Fatalf("settled at %d and %d (start %d)", rep.Settled1, rep.Settled2, rep.HeightAtStart)
	}
	want := map[string]uint64{"alice": 5 * devkit.Dollar, "bob": 5 * devkit.Dollar, "carol": 15 * devkit.Dollar}
	for name, amount := range want {
		if rep.Balances[name] != amount {
			t.Fatalf("final balances %v, want %v", rep.Balances, want)
		}
	}
}
