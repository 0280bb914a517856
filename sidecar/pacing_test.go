package sidecar

import (
	"testing"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/allegro-mesh/allegro/qc"
)

// TestPaceFrames: the mesh may pace frames only while this validator has
// pacingMinInFlight transactions or more waiting for their QCs; a QC
// learned takes its transaction out again.
func TestPaceFrames(t *testing.T) {
	pending, err := lru.New[qc.Hash, *pendingTx](16)
	if err != nil {
		t.Fatal(err)
	}
	s := &Sidecar{pending: pending}
	for i := range pacingMinInFlight {
		if s.paceFrames() {
			t.Fatalf("pacing with %d transactions in flight", i)
		}
		s.pending.Add(qc.Hash{byte(i + 1)}, &pendingTx{})
	}
	if !s.paceFrames() {
		t.Fatalf("no pacing with %d transactions in flight", pacingMinInFlight)
	}
	s.pending.Remove(qc.Hash{1})
	if s.paceFrames() {
		t.Fatal("still pacing after a QC took a transaction out")
	}
}
