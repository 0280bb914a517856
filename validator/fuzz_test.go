package validator

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
)

// FuzzSubmitRequest feeds arbitrary bytes through the protobuf request path
// (unmarshal, Decode, and the full pipeline). It must never panic, and
// whatever it signs must be a payment Decode accepts with the signer's own
// effects.
func FuzzSubmitRequest(f *testing.F) {
	c := newCluster(f, 4)
	seeds := []*payment{
		pay(aliceKey, 0, bob, dollars(10)),
		pay(bobKey, 0, carol, dollars(1)),
	}
	for _, p := range seeds {
		raw, err := proto.Marshal(p.request(f))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	parent := c.certify(f, pay(aliceKey, 0, bob, dollars(10)).request(f))
	withParent := pay(bobKey, 0, carol, dollars(12))
	withParent.parents = []*fastpayv1.QuorumCertificate{fastpayv1.NewQuorumCertificate(parent)}
	withParent.parentHash = parent.Hash[:]
	raw, _ := proto.Marshal(withParent.request(f))
	f.Add(raw)

	v := c.validator(f, 0, "")
	f.Fuzz(func(t *testing.T, data []byte) {
		var req fastpayv1.SubmitFastPayRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return
		}
		cert, err := v.Submit(context.Background(), &req)
		if err != nil {
			if RejectCodeOf(err) == fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED {
				t.Fatal("error without a reject code")
			}
			return
		}
		p, derr := Decode(&req, domain, 8)
		if derr != nil {
			t.Fatalf("signed a request Decode rejects: %v", derr)
		}
		if cert.TxHash != p.TxHash || cert.Effects != p.Effects {
			t.Fatal("certificate does not match the request")
		}
	})
}
