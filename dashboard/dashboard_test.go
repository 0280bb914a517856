package dashboard

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestHandler: the page and its assets are served with their types and a
// same-origin content security policy; other paths are not found.
func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, tc := range []struct {
		path     string
		code     int
		typ      string
		contains string
	}{
		{"/", http.StatusOK, "text/html", `<div id="banner"`},
		{"/dashboard/", http.StatusOK, "text/html", `<div id="banner"`},
		{"/dashboard/app.js", http.StatusOK, "text/javascript", "new EventSource(\"/api/v1/events\")"},
		{"/dashboard/style.css", http.StatusOK, "text/css", ".banner"},
		{"/dashboard/missing.js", http.StatusNotFound, "", ""},
		{"/dashboard/../go.mod", http.StatusNotFound, "", ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if tc.code != http.StatusOK {
				return
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.typ) {
				t.Errorf("Content-Type %q, want %s", ct, tc.typ)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			if !strings.Contains(string(body), tc.contains) {
				t.Errorf("body does not contain %q", tc.contains)
			}
		})
	}
}

// TestStaticFilesAreLocal: the page loads nothing from another origin (no
// absolute URLs, protocol-relative URLs or @import in the embedded files).
func TestStaticFilesAreLocal(t *testing.T) {
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(\s*['"]?(https?:)?//`)
	err := fs.WalkDir(staticFiles, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFiles.ReadFile(path)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s refers to another origin: %q", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCommitteeViewAssets: the page carries the committee view (epoch,
// progress, this epoch's and the next epoch's committee, bindings) and
// its script reads the routes the view needs.
func TestCommitteeViewAssets(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/", []string{`<section class="panel" id="epochs">`, `id="epoch-number"`, `<progress id="epoch-bar"`, `id="epoch-left"`,
			`id="epoch-fixed"`, `<table id="seats"`, `<table id="next-seats"`, `id="next-unknown"`, `<table id="bindings"`,
			`<script src="/dashboard/committee.js" defer></script>`}},
		{"/dashboard/committee.js", []string{"globalThis.allegroCommittee", "function committeeDiff(", "function epochProgress(",
			"function bindingRows(", "function seatsOf("}},
		{"/dashboard/app.js", []string{"globalThis.allegroCommittee", "/api/v1/committee?epoch=", `api("/api/v1/bindings")`,
			"not yet known", "This network has no epochs: its committee is fixed", "this node"}},
		{"/dashboard/style.css", []string{"tr.change-joins", "tr.change-leaves", "#epoch-bar"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(body), w) {
					t.Errorf("%s does not contain %q", tc.path, w)
				}
			}
		})
	}
}
