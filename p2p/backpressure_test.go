package p2p

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/allegro-mesh/allegro/internal/testkit"
)

func TestOutboundBackpressure(t *testing.T) {
	f := newFixture(t, 4)
	idx, err := newCommitteeIndex(f.committee)
	if err != nil {
		t.Fatal(err)
	}
	member, err := PeerIDFromValidatorID(f.signers[1].ID())
	if err != nil {
		t.Fatal(err)
	}
	outsider, err := peer.IDFromPrivateKey(libp2pKey(t, seededKey(0xEE, 0)))
	if err != nil {
		t.Fatal(err)
	}
	o := newOutbound(idx, 64) // congested at 16, resumes at 8, unstalls at 4
	ctx := context.Background()

	// Non-members never congest.
	o.add(outsider, 1000)
	if stalled, err := o.wait(ctx, time.Second); err != nil || stalled != nil {
		t.Fatalf("outsider throttled: %v %v", stalled, err)
	}

	o.add(member, 16)
	// A drain below the resume mark releases a waiting publisher.
	done := make(chan error, 1)
	go func() {
		_, err := o.wait(ctx, 10*time.Second)
		done <- err
	}()
	o.add(member, -4) // 12: still congested (hysteresis)
	select {
	case <-done:
		t.Fatal("released above the resume mark")
	default:
	}
	o.add(member, -4) // 8: resume
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not released after draining")
	}

	// A peer that does not drain is stalled after the wait and ignored
	// until it drains to the unstall mark.
	o.add(member, 8) // 16
	stalled, err := o.wait(ctx, 20*time.Millisecond)
	if err != nil || len(stalled) != 1 || stalled[0] != member {
		t.Fatalf("stall: %v %v", stalled, err)
	}
	o.add(member, 100)
	if stalled, _ := o.wait(ctx, time.Second); stalled != nil {
		t.Fatal("stalled peer still throttles")
	}
	o.add(member, -113) // 3: unstalled, not congested
	o.add(member, 13)   // 16: congested again
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := o.wait(cctx, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait = %v", err)
	}
	// A closed stream forgets its queue and reports what was lost.
	if lost := o.reset(member); lost != 16 {
		t.Errorf("reset reported %d lost", lost)
	}
	if stalled, err := o.wait(ctx, time.Second); err != nil || stalled != nil {
		t.Fatal("reset peer still throttles")
	}
	// Disabled.
	o.add(member, 64)
	if _, err := o.wait(ctx, 0); err != nil {
		t.Fatal(err)
	}
}

func TestRepairSpacing(t *testing.T) {
	u := newUnitMesh(t, nil)
	repairs := func() float64 {
		return metricValue(t, u.reg, "allegro_p2p_pubsub_link_repairs_total", nil)
	}
	settle := func() {
		testkit.Eventually(t, 5*time.Second, "repair goroutine", func() bool {
			u.repairMu.Lock()
			defer u.repairMu.Unlock()
			return !u.repairing[u.outsider]
		})
	}
	u.forceReconnect(u.outsider, repairSubscriptionsLost)
	settle()
	if repairs() != 1 {
		t.Fatalf("first repair not made")
	}
	// A second periodic-check repair right away is spaced out...
	u.forceReconnect(u.outsider, repairNoLink)
	settle()
	if repairs() != 1 {
		t.Fatalf("repair not spaced")
	}
	// ...but a closed writer is always repaired.
	u.forceReconnect(u.outsider, repairWriterClosed)
	settle()
	if got := metricValue(t, u.reg, "allegro_p2p_pubsub_link_repairs_total", map[string]string{"reason": repairWriterClosed}); got != 1 {
		t.Fatalf("writer-closed repair suppressed")
	}
	// After Stop nothing is started.
	if err := u.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	u.forceReconnect(u.member, repairWriterClosed)
	if repairs() != 2 {
		t.Fatalf("repair after stop")
	}
}
