package sidecar

import (
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/validator"
)

func TestParkingLotWakeRetries(t *testing.T) {
	l := newParkingLot(10, time.Minute)
	later := time.Now().Add(time.Hour)
	retried := []*validator.Payment{{TxHash: qc.Hash{1}}, {TxHash: qc.Hash{2}}}
	for _, p := range retried {
		if !l.parkRetry(later, p) {
			t.Fatal("parkRetry refused below the limit")
		}
	}
	waitingForKey := &validator.Payment{TxHash: qc.Hash{3}}
	if !l.parkKey(qc.ContentionKey{NonceSeq: 1}, waitingForKey) {
		t.Fatal("parkKey refused below the limit")
	}

	var released []*validator.Payment
	l.wakeRetries(func(p *validator.Payment) { released = append(released, p) })
	if len(released) != len(retried) || released[0] != retried[0] || released[1] != retried[1] {
		t.Fatalf("released %v, want the two retries before their time", released)
	}
	if n := l.size(); n != 1 {
		t.Fatalf("size %d after waking the retries, want 1 (the key wait stays)", n)
	}
	l.wakeRetries(func(p *validator.Payment) { t.Fatalf("released %v twice", p.TxHash) })
	if dropped := l.expire(time.Now(), func(p *validator.Payment) { t.Fatalf("expire released %v", p.TxHash) }); dropped != 0 {
		t.Fatalf("expire dropped %d before the key wait's deadline", dropped)
	}
}
