package committee

import (
	"strings"
	"testing"
)

// TestKeyModeAdvice: the fix fits where the key file is; a read-only mount
// is never told to chmod.
func TestKeyModeAdvice(t *testing.T) {
	cases := []struct {
		name          string
		owner, euid   int
		readOnly      bool
		want, wantNot string
	}{
		{"own file", 1000, 1000, false, "chmod 600 /k", "read-only"},
		{"root on a writable file", 1000, 0, false, "chmod 600 /k", "chown"},
		{"read-only mount", 0, 1000, true, "read-only mount", "chmod"},
		{"read-only mount as root", 0, 0, true, "defaultMode 0400", "chmod"},
		{"another user's file", 0, 1000, false, "chown 1000 /k", "read-only"},
		{"unknown owner", -1, -1, false, "chmod 600 /k", "chown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := keyModeAdvice("/k", tc.owner, tc.euid, tc.readOnly)
			if !strings.Contains(got, tc.want) || strings.Contains(got, tc.wantNot) {
				t.Fatalf("advice %q: want %q, not %q", got, tc.want, tc.wantNot)
			}
		})
	}
}
