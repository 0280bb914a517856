package apiserver

import (
	"net/http"
	"slices"
	"testing"

	"github.com/allegro-mesh/allegro/bulletin"
)

// withEarlier is a backend that keeps the boards of earlier epochs, as a
// sidecar that changes epochs does.
type withEarlier struct {
	*fakeBackend
	earlier []EpochBoard
}

func (w withEarlier) EarlierBoards() []EpochBoard { return w.earlier }

// TestEarlierBoards: after a boundary, a payment certified in the previous
// epoch is still found by its status, its QC, the bulletin (by tx, and by
// ?epoch=) and the node info lists the boards served; an epoch whose board
// is not kept is a 404.
func TestEarlierBoards(t *testing.T) {
	f := newFake(t, 4)
	old, err := bulletin.New(bulletin.DefaultConfig(), f.committee, f.signers[0].ID(), nil, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	h, e := mustEffects(t, testRequest(7, 3))
	for i := range 3 {
		old.AddCertificate(f.sign(i, h, e))
	}
	if _, ok := old.QC(h); !ok {
		t.Fatal("the old board formed no QC")
	}
	plain := startServer(t, f)
	if code, _, _ := do(t, http.MethodGet, baseURL(plain)+"/api/v1/tx/"+h.Hex()+"/status", ""); code != http.StatusNotFound {
		t.Fatalf("without earlier boards: status %d, want 404", code)
	}

	s := startServer(t, withEarlier{fakeBackend: f, earlier: []EpochBoard{{Epoch: 0, Board: old}}})
	base := baseURL(s)
	code, _, body := do(t, http.MethodGet, base+"/api/v1/tx/"+h.Hex()+"/status", "")
	if code != http.StatusOK || !decodeAs[TxStatusResponse](t, body).QCFormed {
		t.Fatalf("status of an earlier epoch's payment: %d %s", code, body)
	}
	// Signed again in the current epoch (it had not settled): the status
	// and the bulletin still carry the earlier epoch's QC.
	f.board.AddCertificate(f.sign(3, h, e))
	code, _, body = do(t, http.MethodGet, base+"/api/v1/tx/"+h.Hex()+"/status", "")
	if code != http.StatusOK || !decodeAs[TxStatusResponse](t, body).QCFormed {
		t.Fatalf("status of a payment signed again after the boundary: %d %s", code, body)
	}
	code, _, body = do(t, http.MethodGet, base+"/api/v1/bulletin?tx="+h.Hex(), "")
	if got := decodeAs[BulletinResponse](t, body); code != http.StatusOK || len(got.Certificates) != 4 || len(got.QCs) != 1 {
		t.Fatalf("bulletin?tx= across epochs: %d, %d certificates, %d QCs (want 4 and 1)", code, len(got.Certificates), len(got.QCs))
	}
	if code, _, body := do(t, http.MethodGet, base+"/api/v1/tx/"+h.Hex()+"/qc", ""); code != http.StatusOK {
		t.Fatalf("QC of an earlier epoch's payment: %d %s", code, body)
	}
	code, _, body = do(t, http.MethodGet, base+"/api/v1/bulletin?epoch=0", "")
	if got := decodeAs[BulletinResponse](t, body); code != http.StatusOK || len(got.Certificates) != 3 {
		t.Fatalf("bulletin?epoch=0: %d, %d certificates (want the 3 of the earlier board)", code, len(got.Certificates))
	}
	if code, _, body := do(t, http.MethodGet, base+"/api/v1/bulletin?epoch=1", ""); code != http.StatusOK || len(decodeAs[BulletinResponse](t, body).Certificates) != 1 {
		t.Fatalf("bulletin of the current epoch: %d %s", code, body)
	}
	if code, _, _ := do(t, http.MethodGet, base+"/api/v1/bulletin?epoch=7", ""); code != http.StatusNotFound {
		t.Fatalf("bulletin of an epoch not kept: %d, want 404", code)
	}
	if code, _, _ := do(t, http.MethodGet, base+"/api/v1/bulletin?epoch=x", ""); code != http.StatusBadRequest {
		t.Fatalf("bulletin of epoch x: %d, want 400", code)
	}
	_, _, body = do(t, http.MethodGet, base+"/api/v1/info", "")
	if got := decodeAs[InfoResponse](t, body).BoardEpochs; !slices.Equal(got, []U64{1, 0}) {
		t.Fatalf("board_epochs %v, want [1 0]", got)
	}
}
