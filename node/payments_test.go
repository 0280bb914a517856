package node_test

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node/nodetest"
	"github.com/allegro-mesh/allegro/p2p"
	"github.com/allegro-mesh/allegro/qc"
)

// TestPaymentsAndScoresAPI: on a running mesh, GET /api/v1/payments of a
// sidecar that only heard of the payments over the mesh lists them newest
// first with their QC, certificates and effects, in pages; GET
// /api/v1/mesh explains every member's score by terms that add up to it.
func TestPaymentsAndScoresAPI(t *testing.T) {
	cl := nodetest.New(t, 4, chainID, nodetest.Funded())
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	type paid struct {
		hash   qc.Hash
		amount uint64
		sender string
	}
	var sent []paid
	for i, p := range []nodetest.Pay{
		{Key: nodetest.Alice, Nonce: 0, Recipient: nodetest.Address(nodetest.Bob), Amount: 11},
		{Key: nodetest.Alice, Nonce: 1, Recipient: nodetest.Address(nodetest.Carol), Amount: 12},
		{Key: nodetest.Bob, Nonce: 0, Recipient: nodetest.Address(nodetest.Carol), Amount: 13},
		{Key: nodetest.Carol, Nonce: 0, Recipient: nodetest.Address(nodetest.Alice), Amount: 14},
	} {
		p.ChainID = chainID
		q := cl.PayToQC(i%2, p.Request(t), 20*time.Second)
		sent = append(sent, paid{q.TxHash, p.Amount, nodetest.Address(p.Key).Hex()})
		// The next payment is first seen after this one everywhere.
		testkit.Eventually(t, 10*time.Second, "sidecar 3 holds the QC", func() bool { return cl.HasQC(3, q.TxHash) })
	}
	slices.Reverse(sent) // newest first
	base := "http://" + cl.Nodes[3].API.Addr().String()

	getJSON := func(path string, v any) {
		t.Helper()
		resp, body := testkit.Get(t, ctx, base+path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	for _, limit := range []string{"1", "3", "50"} {
		var got []apiserver.TxStatusResponse
		cursor := ""
		for range 10 {
			var page apiserver.PaymentsResponse
			getJSON("/api/v1/payments?limit="+limit+"&cursor="+cursor, &page)
			got = append(got, page.Payments...)
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		if len(got) != len(sent) {
			t.Fatalf("limit %s: %d payments, want %d", limit, len(got), len(sent))
		}
		for i, p := range got {
			w := sent[i]
			if p.TxHash != w.hash.Hex() || !p.QCFormed || p.QCUnixMillis == 0 || p.CertCount < 3 || p.Quorum != 3 ||
				p.Amount == nil || uint64(*p.Amount) != w.amount || !sameAddr(p.Sender, w.sender) || p.Stage != "CERTIFIED" {
				t.Errorf("limit %s, payment %d: %+v, want %s of %d from %s", limit, i, p, w.hash.Hex(), w.amount, w.sender)
			}
		}
	}

	// Scores: snapshots come every InspectPeriod; every member's parts add
	// up to its score and carry the committee bonus.
	bonus := p2p.LocalConfig().Scoring.CommitteeBonus
	var mesh apiserver.MeshResponse
	testkit.Eventually(t, 20*time.Second, "score breakdowns of the three other members", func() bool {
		getJSON("/api/v1/mesh", &mesh)
		n := 0
		for _, p := range mesh.Peers {
			if p.Member && p.Score != nil && p.ScoreParts != nil && len(p.ScoreParts.Topics) > 0 {
				n++
			}
		}
		return n == 3
	})
	if mesh.Scoring == nil || mesh.Scoring.CommitteeBonus != bonus || mesh.Scoring.InvalidMessageWeight >= 0 {
		t.Fatalf("scoring parameters: %+v", mesh.Scoring)
	}
	for _, p := range mesh.Peers {
		if !p.Member {
			continue
		}
		sp := p.ScoreParts
		total := min(sp.TopicSum, sp.TopicCap) + sp.CommitteeBonus + sp.IPColocation + sp.Behaviour
		if sp.CommitteeBonus != bonus || math.Abs(total-*p.Score) > 1e-6*max(1, math.Abs(*p.Score)) {
			t.Errorf("%s: score %v, parts %+v add up to %v", p.Name, *p.Score, sp, total)
		}
		for _, k := range sp.Topics {
			if !slices.Contains([]string{"tx", "bulletin", "qc"}, k.Kind) || k.Topics < 1 || k.InvalidScore != 0 {
				t.Errorf("%s: topic terms %+v: a committee topic kind, no invalid messages", p.Name, k)
			}
		}
	}
}

func sameAddr(a, b string) bool {
	x, errA := apiserver.ParseAddress(a)
	y, errB := apiserver.ParseAddress(b)
	return errA == nil && errB == nil && x == y
}
