package apiserver

import (
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
)

// TestCommitteeSchedule: on a network that changes epochs the committee
// says where its epoch ends and where the chain head is (the fake's head
// is block 4242, its committee of epoch 1); without epochs none of it.
func TestCommitteeSchedule(t *testing.T) {
	u := func(v uint64) *U64 { x := U64(v); return &x }
	for _, tc := range []struct {
		name     string
		epochLen uint64
		headErr  error
		// want: epoch_length, next_epoch_block, next_committee_block; nil
		// head and left: absent.
		length, next, committeeBlock uint64
		head, left                   *U64
	}{
		{name: "one epoch", epochLen: 0},
		{name: "head inside the epoch", epochLen: 4000, length: 4000, next: 8000, committeeBlock: 7999, head: u(4242), left: u(3758)},
		{name: "head past the boundary", epochLen: 2000, length: 2000, next: 4000, committeeBlock: 3999, head: u(4242), left: u(0)},
		{name: "head unknown", epochLen: 4000, headErr: errors.New("no head yet"), length: 4000, next: 8000, committeeBlock: 7999},
		{name: "next epoch beyond 2^64", epochLen: math.MaxUint64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, 4)
			f.edit(func(f *fakeBackend) { f.epochLen, f.headErr = tc.epochLen, tc.headErr })
			s := startServer(t, f)
			code, _, b := do(t, "GET", baseURL(s)+"/api/v1/committee", "")
			if code != http.StatusOK {
				t.Fatalf("committee: %d %s", code, b)
			}
			c := decodeAs[CommitteeResponse](t, b)
			if uint64(c.EpochLength) != tc.length || uint64(c.NextEpochBlock) != tc.next || uint64(c.NextCommitteeBlock) != tc.committeeBlock {
				t.Errorf("schedule: length %d next %d committee block %d, want %d %d %d (%s)",
					c.EpochLength, c.NextEpochBlock, c.NextCommitteeBlock, tc.length, tc.next, tc.committeeBlock, b)
			}
			same := func(got, want *U64) bool { return (got == nil) == (want == nil) && (got == nil || *got == *want) }
			if !same(c.HeadHeight, tc.head) || !same(c.BlocksLeft, tc.left) {
				t.Errorf("head %v blocks left %v, want %v %v (%s)", c.HeadHeight, c.BlocksLeft, tc.head, tc.left, b)
			}
			if tc.length == 0 {
				for _, field := range []string{"epoch_length", "next_epoch_block", "head_height", "blocks_left"} {
					if strings.Contains(string(b), field) {
						t.Errorf("without epochs the answer has %q: %s", field, b)
					}
				}
			}
			if tc.head != nil && !strings.Contains(string(b), `"blocks_left":"`) {
				t.Errorf("blocks_left not a decimal string: %s", b)
			}
		})
	}
}
