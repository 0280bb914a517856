package settlement

import (
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/tempo/chain"
)

// FollowBoard feeds the settler every QC the board emits from now on (formed
// here or the first received for a transaction) and returns a function that
// ends the feed and waits for it. QCs the board already held are not
// replayed; a subscriber that lags loses events (bulletin counts them), in
// which case the transaction is still settled by the other sidecars.
func (s *Settler) FollowBoard(b *bulletin.Board) (stop func()) {
	sub := b.Subscribe(func(ev *bulletin.Event) bool { return ev.Kind == bulletin.EventQC && ev.QC != nil })
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range sub.C() {
			s.Certified(ev.QC)
		}
	}()
	return func() {
		sub.Close()
		<-done
	}
}

// The sidecar's real implementations satisfy the interfaces.
var (
	_ Chain  = (*chain.Client)(nil)
	_ Stages = (*bulletin.Board)(nil)
)
