package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// TestSignedAloneSurvivesSIGKILL: three of four sidecars are killed, a
// payment is submitted to the fourth (which signs it alone), then it is
// killed too, and all four start again. Nobody resubmits: the payment gets
// its QC and settles, from what the fourth wrote before it signed.
func TestSignedAloneSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const n = 4
	pc := startSidecars(t, n, devchain.Config{BlockPeriod: 500 * time.Millisecond, LoadAccounts: -1}, nil)
	pc.waitMesh(t, ctx)
	for i := 1; i < n; i++ {
		pc.kill(i)
	}

	body := payment(t, devkit.DemoAccounts()[0], 0, 3)
	resp, err := http.Post(pc.api(0)+"/api/v1/submit-raw-tx", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	respBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got struct {
		TxHash string `json:"tx_hash"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(respBody, &got) != nil || got.TxHash == "" {
		t.Fatalf("submit-raw-tx with three sidecars down: %d %s", resp.StatusCode, respBody)
	}
	pc.kill(0)

	for i := range n {
		pc.start(i)
	}
	status := func(i int, ok func(qcFormed bool, stage string) bool) {
		t.Helper()
		testkit.WaitHTTP(t, ctx, pc.api(i)+"/api/v1/tx/"+got.TxHash+"/status", func(b []byte) bool {
			var st struct {
				QCFormed bool   `json:"qc_formed"`
				Stage    string `json:"stage"`
			}
			return json.Unmarshal(b, &st) == nil && ok(st.QCFormed, st.Stage)
		})
	}
	for i := range n {
		status(i, func(qcFormed bool, _ string) bool { return qcFormed })
	}
	// The entry sidecar still had the raw transaction after the restart, so
	// the QC does not stay a promise: it settles.
	status(0, func(_ bool, stage string) bool { return stage == "INCLUDED" || stage == "FINALIZED" })
}
