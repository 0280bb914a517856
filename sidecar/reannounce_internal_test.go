package sidecar

import (
	"testing"
	"time"
)

// TestWaitForProgress: a due transaction still gaining certificates waits
// another interval, at most maxProgressWaits times in a row; one that
// gained nothing since the last look is announced at once.
func TestWaitForProgress(t *testing.T) {
	const wait = 5 * time.Second
	now := time.Unix(1_000, 0)
	for _, tc := range []struct {
		name  string
		start pendingTx
		looks []int  // certificates on the board at each successive look
		want  []bool // waited (true) or announced (false), per look
	}{
		{"stalled from the start", pendingTx{certs: 1}, []int{1, 1}, []bool{false, false}},
		{"gaining, then stalled", pendingTx{certs: 1}, []int{5, 9, 9}, []bool{true, true, false}},
		{"gaining without end is announced after the cap", pendingTx{certs: 1}, []int{2, 3, 4, 5, 6, 7, 8, 9}, []bool{true, true, true, false, true, true, true, false}},
		{"fewer than before (the entry was evicted and made again)", pendingTx{certs: 4}, []int{2, 3}, []bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt := tc.start
			pt.wait = wait
			for i, certs := range tc.looks {
				at := now.Add(time.Duration(i) * wait)
				got := pt.waitForProgress(certs, at)
				if got != tc.want[i] {
					t.Fatalf("look %d (%d certificates): waited %v, want %v", i, certs, got, tc.want[i])
				}
				if got && !pt.next.Equal(at.Add(wait)) {
					t.Fatalf("look %d: next look at %s, want one interval later", i, pt.next)
				}
			}
		})
	}
}
