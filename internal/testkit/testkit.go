// Package testkit is what the project's tests share below the level of a
// whole sidecar: polling for an event with a deadline, the development
// chain started for a test, streaming a payment to its QC, free loopback
// ports and the project's binaries built once. In-process clusters of
// sidecars are package node/nodetest, built on this one.
package testkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/internal/freeport"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/tempo/devchain"
)

// pollEvery is how often Eventually and WaitHTTP look again.
const pollEvery = 5 * time.Millisecond

// Eventually polls cond until it holds, or fails the test after timeout
// naming what it waited for.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(pollEvery)
	}
}

// WaitHTTP polls url until ok holds for a 200 answer's body, for at most a
// minute or until ctx ends.
func WaitHTTP(t testing.TB, ctx context.Context, url string, ok func(body []byte) bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && ok(b) {
				return
			}
		}
		time.Sleep(10 * pollEvery)
	}
	t.Fatalf("timed out waiting for %s", url)
}

// FreePort returns a loopback TCP port that was free a moment ago and that
// no earlier call in this process returned (freeport.Draw).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Draw()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// StartDevChain starts a development chain with cfg, stopped when the test
// ends.
func StartDevChain(t testing.TB, cfg devchain.Config) *devchain.Chain {
	t.Helper()
	dc, err := devchain.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := dc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Stop(context.Background()) })
	return dc
}

// StreamToQC submits req through a sidecar's SubmitFastPayStream and returns
// the QC and how many certificates the stream delivered before it. A
// reject, a stream ending without a QC or ctx ending fails the test.
func StreamToQC(t testing.TB, ctx context.Context, client fastpayv1.FastPaySidecarClient, req *fastpayv1.SubmitFastPayRequest) (*qc.QC, int) {
	t.Helper()
	q, certs, reject, err := StreamQC(ctx, client, req)
	switch {
	case err != nil:
		t.Fatal(err)
	case reject != nil:
		t.Fatalf("rejected: %s", reject)
	}
	return q, certs
}

// StreamQC is StreamToQC returning the reject or the error instead of
// failing a test.
func StreamQC(ctx context.Context, client fastpayv1.FastPaySidecarClient, req *fastpayv1.SubmitFastPayRequest) (*qc.QC, int, *fastpayv1.RejectReason, error) {
	stream, err := client.SubmitFastPayStream(ctx, req)
	if err != nil {
		return nil, 0, nil, err
	}
	certs := 0
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, certs, nil, errors.New("stream ended without a QC")
		}
		if err != nil {
			return nil, certs, nil, fmt.Errorf("stream: %w", err)
		}
		switch e := ev.Event.(type) {
		case *fastpayv1.SubmitFastPayEvent_Reject:
			return nil, certs, e.Reject, nil
		case *fastpayv1.SubmitFastPayEvent_Cert:
			certs++
		case *fastpayv1.SubmitFastPayEvent_Qc:
			q, err := e.Qc.ToQC()
			return q, certs, nil, err
		}
	}
}

// RetryStreamToQC is StreamToQC that submits again, until ctx ends, while
// the sidecar answers TEMPORARY_UNAVAILABLE (an epoch changing, a handover
// in progress); dial returns the client to submit to at each attempt.
func RetryStreamToQC(t testing.TB, ctx context.Context, dial func() fastpayv1.FastPaySidecarClient, req *fastpayv1.SubmitFastPayRequest) *qc.QC {
	t.Helper()
	for {
		q, _, reject, err := StreamQC(ctx, dial(), req)
		switch {
		case err == nil && reject == nil:
			return q
		case ctx.Err() != nil:
			t.Fatalf("no QC before the deadline: reject %v, err %v", reject, err)
		case reject != nil && reject.Code != fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE:
			t.Fatalf("rejected: %s", reject)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// The project's binaries, each built once per test binary run.
var (
	binMu    sync.Mutex
	binDir   string
	binaries = map[string]string{}
)

// Binary builds the main package pkg (an import path such as
// "github.com/allegro-mesh/allegro/cmd/allegro", or a directory) once per
// test run and returns its path. Call Cleanup from TestMain to remove the
// builds.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if path, ok := binaries[pkg]; ok {
		return path
	}
	if binDir == "" {
		dir, err := os.MkdirTemp("", "allegro-test-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = dir
	}
	path := filepath.Join(binDir, strings.ReplaceAll(strings.Trim(pkg, "./"), "/", "_"))
	var stderr strings.Builder
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, stderr.String())
	}
	binaries[pkg] = path
	return path
}

// LinkedPackages returns the import path of every package the package pkg
// links (go list -deps), for tests of what a binary must not contain. It
// skips in -short mode and fails when go list lists too few packages for
// such a test to mean anything.
func LinkedPackages(t testing.TB, pkg string) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list -deps %s listed %d packages: a check of them would pass vacuously", pkg, len(deps))
	}
	return deps
}

// Cleanup removes what Binary built.
func Cleanup() {
	binMu.Lock()
	defer binMu.Unlock()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	binDir, binaries = "", map[string]string{}
}

// MainWithCleanup runs a package's tests, then Cleanup; use it as TestMain's
// body.
func MainWithCleanup(m interface{ Run() int }) int {
	code := m.Run()
	Cleanup()
	return code
}

// Get fetches url with GET, failing the test when no answer comes; it
// returns the answer and its body.
func Get(t testing.TB, ctx context.Context, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// SyncBuffer is a bytes.Buffer several goroutines may write to, such as a
// log sink shared by a cluster's nodes.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
