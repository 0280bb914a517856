package node_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/validator"
)

// TestConflictCheckAPI: a block builder asks a sidecar, over gRPC and JSON,
// whether a raw transaction conflicts with what the mesh certified.
func TestConflictCheckAPI(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded())
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	pay := nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 10}
	req := pay.Request(t)
	q, _ := cl.StreamToQC(0, req)
	// Sidecar 3 learned the QC from the mesh (and signed it, or not).
	testkit.Eventually(t, 10*time.Second, "sidecar 3 holds the QC", func() bool {
		_, ok := cl.Nodes[3].Sidecar.Board().QC(q.TxHash)
		return ok
	})
	certified := req.GetTx().GetTempoTx().GetData()
	pay.Recipient = nodetest.Address(nodetest.Carol)
	conflicting := pay.Request(t).GetTx().GetTempoTx().GetData()

	conn, err := grpc.NewClient(cl.Nodes[3].API.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	checker := fastpayv1.NewConflictCheckClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	resp, err := checker.CheckConflict(ctx, &fastpayv1.CheckConflictRequest{RawTx: certified})
	if err != nil || !resp.GetCertified() || len(resp.GetConflicts()) != 0 {
		t.Fatalf("the certified transaction: %v %v", resp, err)
	}
	resp, err = checker.CheckConflict(ctx, &fastpayv1.CheckConflictRequest{RawTx: conflicting})
	if err != nil || resp.GetCertified() || len(resp.GetConflicts()) == 0 || resp.GetConflicts()[0].GetKind() != validator.ConflictCertifiedKey {
		t.Fatalf("a conflicting transaction: %v %v", resp, err)
	}
	if _, err := checker.CheckConflict(ctx, &fastpayv1.CheckConflictRequest{RawTx: []byte{0x02, 0x01}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("garbage: %v", err)
	}

	post := func(body string) (int, apiserver.ConflictCheckResponse) {
		t.Helper()
		r, err := http.Post("http://"+cl.Nodes[3].API.Addr().String()+"/api/v1/conflict-check", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var out apiserver.ConflictCheckResponse
		if r.StatusCode == http.StatusOK {
			if err := json.NewDecoder(r.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
		}
		return r.StatusCode, out
	}
	code, out := post(`{"raw_tx":"0x` + hex.EncodeToString(conflicting) + `"}`)
	if code != http.StatusOK || out.Certified || len(out.Conflicts) == 0 || out.Conflicts[0].Kind != validator.ConflictCertifiedKey || out.Conflicts[0].TxHash != q.TxHash.Hex() {
		t.Fatalf("JSON, conflicting: %d %+v", code, out)
	}
	if code, out = post(`{"raw_tx":"` + hex.EncodeToString(certified) + `"}`); code != http.StatusOK || !out.Certified || len(out.Conflicts) != 0 {
		t.Fatalf("JSON, certified: %d %+v", code, out)
	}
	for _, bad := range []string{`{}`, `{"raw_tx":"0xzz"}`, `{"raw_tx":"0x0201"}`, `{"raw_tx":"0x00","extra":1}`} {
		if code, _ := post(bad); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
}
