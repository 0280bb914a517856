package validator

import (
	"context"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
)

// BenchmarkSubmit measures full validation of one payment: decode, sender
// recovery, state checks, the fsynced durable write and signing. Each
// iteration uses a fresh sender so nonces and funds never run out.
func BenchmarkSubmit(b *testing.B) {
	c := newCluster(b, 4)
	v := c.validator(b, 0, "")
	const senders = 4096
	reqs := make([]*fastpayv1.SubmitFastPayRequest, senders)
	for i := range reqs {
		key, _ := crypto.GenerateKey()
		c.chain.SetBalance(token, crypto.PubkeyToAddress(key.PublicKey), dollars(1_000_000))
		reqs[i] = pay(key, 0, bob, dollars(1)).request(b)
	}
	i := 0
	b.ResetTimer()
	for b.Loop() {
		if i == senders {
			b.StopTimer()
			c = newCluster(b, 4)
			v = c.validator(b, 0, "")
			for _, r := range reqs {
				p, _ := Decode(r, domain, 8)
				c.chain.SetBalance(token, [20]byte(p.Effects.Sender), dollars(1_000_000))
			}
			i = 0
			b.StartTimer()
		}
		if _, err := v.Submit(context.Background(), reqs[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkDecode measures stage 1 alone (decode, recover, extract).
func BenchmarkDecode(b *testing.B) {
	req := pay(aliceKey, 0, bob, dollars(1)).request(b)
	for b.Loop() {
		if _, err := Decode(req, domain, 8); err != nil {
			b.Fatal(err)
		}
	}
}
