package epoch

import (
	"testing"

	"google.golang.org/protobuf/proto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// FuzzCloseBundle: a close bundle and a binding bundle of any bytes, as a
// peer sends them over the closes and bindings streams, never panic on
// their way through decoding (ToClose, ToBinding), a handover (AddClose)
// and qc.CheckBinding; a close the handover adopts verifies, and a refused
// one changes nothing.
func FuzzCloseBundle(f *testing.F) {
	net := newNetwork("a", "b", "c", "d")
	c1 := net.committee(f, 1, "a", "b", "c", "d")
	entry := net.own("a", 1, txOf("t"), payment(1, 5))
	entry.Request = []byte{} // an empty request: the wire form needs a SubmitFastPayRequest
	valid := net.close(f, "a", 1, 10, entry)
	wire, err := fastpayv1.NewEpochClose(valid)
	if err != nil {
		f.Fatal(err)
	}
	bundle, _ := proto.Marshal(&fastpayv1.CloseBundle{Closes: []*fastpayv1.EpochClose{wire}})
	f.Add(bundle, []byte{})
	b, err := qc.SignBinding(net.keys["a"], net.keys["b"], chainID, 3)
	if err != nil {
		f.Fatal(err)
	}
	bindings, _ := proto.Marshal(&fastpayv1.BindingBundle{Bindings: []*fastpayv1.SidecarBinding{fastpayv1.NewSidecarBinding(&b)}})
	f.Add([]byte{}, bindings)
	f.Add([]byte{0x0a, 0x02, 0x08}, []byte{0x0a, 0xff})

	f.Fuzz(func(t *testing.T, closes, bindings []byte) {
		h := newHandover(t, c1)
		var cb fastpayv1.CloseBundle
		if proto.Unmarshal(closes, &cb) == nil {
			for _, w := range cb.Closes {
				cl, err := w.ToClose()
				if err != nil {
					continue
				}
				before := h.Status()
				got, err := h.AddClose(cl)
				switch {
				case err != nil && h.Status() != before:
					t.Fatalf("a refused close changed the handover: %v", err)
				case err == nil && got.New && c1.VerifyClose(cl) != nil:
					t.Fatal("adopted a close that does not verify")
				}
			}
		}
		var bb fastpayv1.BindingBundle
		if proto.Unmarshal(bindings, &bb) == nil {
			for _, w := range bb.Bindings {
				b, err := w.ToBinding()
				if err != nil {
					continue
				}
				_ = qc.CheckBinding(&b, chainID, func(qc.ValidatorID) bool { return true })
			}
		}
	})
}
