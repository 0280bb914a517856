package safety_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/safety"
)

func writeCommittee(t *testing.T) string {
	t.Helper()
	f := &committee.File{ChainID: 1337, Epoch: 1, QCShards: 16, Members: []committee.Member{
		{Name: "v0", PublicKey: strings.Repeat("11", 32)},
	}}
	path := filepath.Join(t.TempDir(), "committee.toml")
	if err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCollectBounded: a sidecar whose bulletin never ends, or whose cursor
// does not advance, or which answers garbage, is read within the bounds and
// its errors are recorded; Collect still returns a history.
func TestCollectBounded(t *testing.T) {
	var endless, stuck, garbage atomic.Int32
	mux := http.NewServeMux()
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("/endless/api/v1/bulletin", func(w http.ResponseWriter, r *http.Request) {
		endless.Add(1)
		n, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
		writeJSON(w, apiserver.BulletinResponse{Certificates: []apiserver.JSONCertificate{}, QCs: []apiserver.JSONQC{}, NextCursor: strconv.Itoa(n + 1)})
	})
	mux.HandleFunc("/stuck/api/v1/bulletin", func(w http.ResponseWriter, r *http.Request) {
		stuck.Add(1)
		writeJSON(w, apiserver.BulletinResponse{NextCursor: "7"})
	})
	mux.HandleFunc("/garbage/api/v1/bulletin", func(w http.ResponseWriter, r *http.Request) {
		garbage.Add(1)
		fmt.Fprint(w, "<html>not json")
	})
	for _, p := range []string{"/endless", "/stuck", "/garbage"} {
		mux.HandleFunc(p+"/api/v1/info", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, apiserver.InfoResponse{Name: "v0", ID: "0x" + strings.Repeat("11", 32)})
		})
		mux.HandleFunc(p+"/api/v1/evidence", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, apiserver.EvidenceResponse{Evidence: []apiserver.JSONEquivocation{}})
		})
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := safety.Collect(ctx, safety.CollectConfig{
		Sidecars: []safety.Sidecar{
			{Name: "v0", APIURL: srv.URL + "/endless", Honest: true},
			{Name: "stuck", APIURL: srv.URL + "/stuck", Honest: true},
			{Name: "garbage", APIURL: srv.URL + "/garbage", Honest: true},
		},
		CommitteeFile: writeCommittee(t), MaxPages: 25, TxHashes: []qc.Hash{{1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if endless.Load() != 25 || stuck.Load() != 2 || garbage.Load() != 2 {
		t.Fatalf("bulletin requests: endless %d (want 25), stuck %d (want 2), garbage %d (want 2: one retry)", endless.Load(), stuck.Load(), garbage.Load())
	}
	want := map[string]string{"v0": "MaxPages", "stuck": "did not advance", "garbage": "decode response"}
	for _, s := range h.Sources {
		if w := want[s.Name]; len(s.Errors) == 0 || !strings.Contains(strings.Join(s.Errors, "; "), w) {
			t.Errorf("source %s errors %v, want one with %q", s.Name, s.Errors, w)
		}
	}
	if r := safety.Check(h, nil); !r.OK() || len(r.Notes) == 0 {
		t.Fatalf("OK %v notes %v", r.OK(), r.Notes)
	}
}
