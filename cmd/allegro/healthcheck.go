package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/allegro-mesh/allegro/internal/cli"
)

func init() {
	app.Register("healthcheck", "probe a health URL and exit 0 when healthy (container HEALTHCHECK; the image has no shell)", runHealthcheck)
}

// healthcheckConfig is what `allegro healthcheck` probes.
type healthcheckConfig struct {
	// URL is probed with GET (sidecar: http://127.0.0.1:7070/readyz, its
	// readiness; /livez for liveness alone), or with a JSON-RPC
	// eth_blockNumber POST when JSONRPC is set.
	URL string
	// JSONRPC probes a chain node: healthy when eth_blockNumber answers
	// with a result.
	JSONRPC bool
	// Timeout bounds the whole probe (default 2 s).
	Timeout time.Duration
}

func (c healthcheckConfig) Validate() error {
	if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		return fmt.Errorf("--url %q: want an http:// or https:// URL", c.URL)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", c.Timeout)
	}
	return nil
}

func runHealthcheck(ctx context.Context, args []string, stdout io.Writer) error {
	fs := app.Flags("healthcheck", "[--url URL] [--jsonrpc] [--timeout D]")
	cfg := healthcheckConfig{}
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:7070/readyz", "URL to probe: healthy on HTTP 200 (a sidecar's /readyz, or /livez for liveness only)")
	fs.BoolVar(&cfg.JSONRPC, "jsonrpc", false, "probe a JSON-RPC chain node (eth_blockNumber) instead of GET")
	fs.DurationVar(&cfg.Timeout, "timeout", 2*time.Second, "give up after this long")
	quiet := fs.Bool("quiet", false, "print nothing when healthy")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	msg, err := probe(ctx, cfg)
	if err != nil {
		return err
	}
	if !*quiet {
		fmt.Fprintln(stdout, "healthy:", msg)
	}
	return nil
}

// probe returns a short description of a healthy answer, or why it is not
// healthy.
func probe(ctx context.Context, cfg healthcheckConfig) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	method, body := http.MethodGet, io.Reader(nil)
	if cfg.JSONRPC {
		method = http.MethodPost
		body = strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`)
	}
	req, err := http.NewRequestWithContext(ctx, method, cfg.URL, body)
	if err != nil {
		return "", fmt.Errorf("request: %w", err)
	}
	if cfg.JSONRPC {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return "", fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("unhealthy: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	if !cfg.JSONRPC {
		return strings.TrimSpace(string(b)), nil
	}
	var rpc struct {
		Result string          `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(b, &rpc); err != nil {
		return "", fmt.Errorf("unhealthy: JSON-RPC answer: %w", err)
	}
	if len(rpc.Error) > 0 && string(rpc.Error) != "null" {
		return "", fmt.Errorf("unhealthy: JSON-RPC error %s", rpc.Error)
	}
	if rpc.Result == "" {
		return "", errors.New("unhealthy: JSON-RPC answer without a result")
	}
	return "block " + rpc.Result, nil
}
