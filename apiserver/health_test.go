package apiserver

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReadiness: each missing condition makes /readyz answer 503 with a body
// naming it (and only it); /livez answers 200 whatever is missing.
func TestReadiness(t *testing.T) {
	f := newFake(t, 4) // quorum 3: this validator and 2 of the 3 others
	s := startServer(t, f, func(c *Config) { c.ReadyMaxHeadAge = 30 * time.Second })
	url := baseURL(s) + "/readyz"

	for _, c := range []struct {
		name    string
		set     func(f *fakeBackend)
		missing []string
		detail  string // in the first missing check's detail, or any check's when ready
	}{
		{name: "everything there", set: func(*fakeBackend) {}, detail: "connected to 3 of 3"},
		{name: "one peer away, quorum still reachable", set: func(f *fakeBackend) { f.away = map[string]bool{"v3": true} },
			detail: "not connected: v3"},
		{name: "two peers away", set: func(f *fakeBackend) { f.away = map[string]bool{"v1": true, "v3": true} },
			missing: []string{CheckCommitteePeers}, detail: "connected to 1 of 3 other committee members; a quorum of 3 needs 2; not connected: v1, v3"},
		{name: "no peer", set: func(f *fakeBackend) { f.away = map[string]bool{"v1": true, "v2": true, "v3": true} },
			missing: []string{CheckCommitteePeers}, detail: "connected to 0 of 3"},
		{name: "chain unreachable", set: func(f *fakeBackend) { f.headErr = errors.New("dial tcp 127.0.0.1:8545: connection refused") },
			missing: []string{CheckChainReachable, CheckChainHeadFresh}, detail: "connection refused"},
		{name: "chain node away, last head still fresh", set: func(f *fakeBackend) { f.chainErr = errors.New("chain node unreachable (reconnecting)") },
			missing: []string{CheckChainReachable}, detail: "reconnecting"},
		{name: "head stale", set: func(f *fakeBackend) { f.headAge = 31 * time.Second },
			missing: []string{CheckChainHeadFresh}, detail: "at most 30s"},
		{name: "head without a timestamp", set: func(f *fakeBackend) { f.headNoTS = true },
			missing: []string{CheckChainHeadFresh}, detail: "no timestamp"},
		{name: "head ahead of the clock", set: func(f *fakeBackend) { f.headAge = -5 * time.Second }, detail: "is 0s old"},
		{name: "state store closed", set: func(f *fakeBackend) { f.storeErr = errors.New("state store is closed") },
			missing: []string{CheckStateStore}, detail: "state store is closed"},
		{name: "not signing", set: func(f *fakeBackend) { f.signingErr = errors.New("doppelganger window open") },
			missing: []string{CheckSigning}, detail: "doppelganger window open"},
		{name: "everything missing", set: func(f *fakeBackend) {
			f.away = map[string]bool{"v1": true, "v2": true, "v3": true}
			f.headErr = errors.New("no head")
			f.storeErr = errors.New("closed")
		}, missing: []string{CheckCommitteePeers, CheckChainReachable, CheckChainHeadFresh, CheckStateStore}, detail: "0 of 3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.edit(func(f *fakeBackend) {
				f.away, f.headErr, f.headAge, f.headNoTS, f.storeErr, f.chainErr, f.signingErr = nil, nil, 0, false, nil, nil, nil
				c.set(f)
			})
			code, _, b := do(t, "GET", url, "")
			r := decodeAs[ReadyResponse](t, b)
			wantCode := http.StatusOK
			if len(c.missing) > 0 {
				wantCode = http.StatusServiceUnavailable
			}
			if code != wantCode || r.Ready != (len(c.missing) == 0) || !slices.Equal(r.Missing, c.missing) {
				t.Fatalf("%d %s; want %d missing %v", code, b, wantCode, c.missing)
			}
			names := make([]string, len(r.Checks))
			for i, ch := range r.Checks {
				names[i] = ch.Name
				if ch.OK == slices.Contains(c.missing, ch.Name) {
					t.Errorf("check %s ok=%v", ch.Name, ch.OK)
				}
				if ch.Detail == "" {
					t.Errorf("check %s has no detail", ch.Name)
				}
			}
			if want := []string{CheckCommitteePeers, CheckChainReachable, CheckChainHeadFresh, CheckStateStore, CheckSigning}; !slices.Equal(names, want) {
				t.Errorf("checks %v, want %v", names, want)
			}
			if !strings.Contains(string(b), c.detail) {
				t.Errorf("body %s lacks %q", b, c.detail)
			}
			if code, _, b := do(t, "GET", baseURL(s)+"/livez", ""); code != http.StatusOK || decodeAs[LiveResponse](t, b).Status != "ok" {
				t.Errorf("livez: %d %s", code, b)
			}
		})
	}
}
