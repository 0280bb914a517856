// Package dashboard is the web page every sidecar serves on its HTTP API: the
// committee and the gossip mesh, a live feed of payments (certificates one by
// one, the QC, then the settlement stages against the chain head) and any
// equivocation evidence or settlement failure. The page is plain HTML, CSS
// and JavaScript embedded in the binary; it reads the sidecar's JSON API and
// its server-sent events, and makes no other network request.
//
// A local network (devnet) adds its dev wallet's routes (package
// devnet/devwallet): the page then offers a payment form and the
// chained-payment demo for the development chain's well-known accounts.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var staticFiles embed.FS

// Config configures the dashboard of a sidecar.
type Config struct {
	// Enabled serves the page at / and /dashboard/ on the sidecar's HTTP API
	// (default true). The page only reads APIs the sidecar serves anyway.
	Enabled bool `toml:"enabled"`
}

// DefaultConfig returns the defaults: the page on.
func DefaultConfig() Config { return Config{Enabled: true} }

// Validate reports the first invalid field (there is none to get wrong).
func (c Config) Validate() error { return nil }

// contentSecurityPolicy keeps the page to its own origin: no external
// scripts, styles, fonts, images or connections.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the page: index.html at "/" and "/dashboard/", and the
// assets under "/dashboard/". Mount it for "GET /{$}" and "GET /dashboard/".
func Handler() http.Handler {
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic("dashboard: embedded files missing: " + err.Error()) // a build defect
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/dashboard")
		if name == "" {
			name = "/" // the file server answers "/" with index.html
		}
		if path.Clean(name) != name {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// Small files, and a new binary may change them: always revalidate.
		h.Set("Cache-Control", "no-cache")
		r2 := r.Clone(r.Context())
		r2.URL.Path = name
		files.ServeHTTP(w, r2)
	})
}
