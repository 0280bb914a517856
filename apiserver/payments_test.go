package apiserver

import (
	"net/http"
	"strconv"
	"testing"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// TestHTTPPayments: GET /api/v1/payments pages newest first through the
// board's payments with their effects, certificates, QC and settlement;
// bad parameters get 400 naming the parameter.
func TestHTTPPayments(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f)
	base := baseURL(s) + routePayments

	var hashes []qc.Hash
	for seq := range uint64(5) {
		h, e := mustEffects(t, testRequest(seq, 3+seq))
		hashes = append(hashes, h)
		for i := range 3 {
			f.board.AddCertificate(f.sign(i, h, e))
		}
	}
	f.board.SetStage(hashes[4], fastpayv1.TxLifecycleUpdate_INCLUDED, 42)
	f.board.ReportSettlementFailure(hashes[3], "reverted")

	var got []TxStatusResponse
	cursor := ""
	for range 10 {
		code, _, b := do(t, http.MethodGet, base+"?limit=2&cursor="+cursor, "")
		page := decodeAs[PaymentsResponse](t, b)
		if code != http.StatusOK || len(page.Payments) > 2 {
			t.Fatalf("page: %d %s", code, b)
		}
		got = append(got, page.Payments...)
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if len(got) != len(hashes) {
		t.Fatalf("paged %d payments, want %d", len(got), len(hashes))
	}
	for i, p := range got {
		want := hashes[len(hashes)-1-i]
		if p.TxHash != want.Hex() || p.CertCount != 3 || len(p.Certificates) != 3 || !p.QCFormed || p.QCUnixMillis == 0 ||
			p.Amount == nil || *p.Amount != U64(3+len(hashes)-1-i) || p.Sender != alice.Hex() || p.Token == "" {
			t.Errorf("payment %d: %+v, want %s", i, p, want.Hex())
		}
	}
	if p := got[0]; p.Stage != "INCLUDED" || p.BlockHeight != 42 || p.Stages["INCLUDED"] == 0 || p.Stages["CERTIFIED"] == 0 {
		t.Errorf("included payment: %+v", p)
	}
	if p := got[1]; p.SettlementFailure != "reverted" || p.Stage != "CERTIFIED" {
		t.Errorf("failed payment: %+v", p)
	}
	// The status route describes a payment the same way.
	code, _, b := do(t, http.MethodGet, baseURL(s)+"/api/v1/tx/"+hashes[3].Hex()+"/status", "")
	if st := decodeAs[TxStatusResponse](t, b); code != http.StatusOK || st.SettlementFailure != "reverted" || st.Amount == nil {
		t.Errorf("status: %d %s", code, b)
	}

	code, _, b = do(t, http.MethodGet, base, "")
	if page := decodeAs[PaymentsResponse](t, b); code != http.StatusOK || len(page.Payments) != len(hashes) || page.NextCursor != "" {
		t.Errorf("default page: %d %s", code, b)
	}
	for _, q := range []string{"?limit=0", "?limit=-1", "?limit=ten", "?cursor=%21%21", "?cursor=0", "?cursor=" + strconv.Itoa(1<<30)} {
		if code, _, b := do(t, http.MethodGet, base+q, ""); code != http.StatusBadRequest || decodeAs[ErrorResponse](t, b).Error.Message == "" {
			t.Errorf("%s: %d %s, want 400", q, code, b)
		}
	}
	if code, _, _ := do(t, http.MethodPost, base, ""); code != http.StatusMethodNotAllowed {
		t.Errorf("POST payments: %d", code)
	}
}
