package sidecar

import (
	"testing"
	"time"
)

// TestWaitForProgress: a due transaction still gaining certificates is
// looked at again one gap later, at most maxProgressWaits times in a row;
// one that gained nothing since the last look is announced at once, and
// after an announcement the gap is the doubled wait.
// gapAfter is the wait before the announcement at look i: the initial wait
// doubled once per earlier announcement.
func gapAfter(i int, want []bool, wait time.Duration) time.Duration {
	for _, waited := range want[:i] {
		if !waited {
			wait *= 2
		}
	}
	return wait
}

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
			// First looked at early, as while the mesh forms.
			pt.wait, pt.gap = wait, 250*time.Millisecond
			at := now
			for i, certs := range tc.looks {
				gap := pt.gap
				got := pt.waitForProgress(certs, at)
				if got != tc.want[i] {
					t.Fatalf("look %d (%d certificates): waited %v, want %v", i, certs, got, tc.want[i])
				}
				if !got {
					pt.announced(at, time.Minute)
					if pt.gap != 2*gapAfter(i, tc.want, wait) || !pt.next.Equal(at.Add(pt.gap)) {
						t.Fatalf("look %d: after the announcement next look in %s (at %s), want the doubled wait", i, pt.gap, pt.next)
					}
				} else if !pt.next.Equal(at.Add(gap)) {
					t.Fatalf("look %d: next look at %s, want one gap (%s) later", i, pt.next, gap)
				}
				at = pt.next
			}
		})
	}
}
