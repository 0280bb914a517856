package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/internal/testkit"
)

// TestSidecarStartupErrors runs the real binary with bad settings: it exits
// with status 1 and reports the error as one line that names the setting
// (TOML key, flag, variable) and says how to fix it, without the dependency
// graph's trail and without libp2p's own report of the same failure.
func TestSidecarStartupErrors(t *testing.T) {
	bin := testkit.Binary(t, "github.com/allegro-mesh/allegro/cmd/allegro")
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dataDir, "validator.key")
	if out, err := exec.Command(bin, "keygen", "--out", key, "--name", "v0").CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v %s", err, out)
	}
	// The mesh port is held by this test, so the sidecar cannot bind it.
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	committee := filepath.Join(dir, "committee.toml")
	if out, err := exec.Command(bin, "committee", "--chain-id", "1337", "--out", committee,
		"--key-file", fmt.Sprintf("%s@/ip4/127.0.0.1/tcp/%d", key, busyPort)).CombinedOutput(); err != nil {
		t.Fatalf("committee: %v %s", err, out)
	}
	badFile := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(badFile, []byte("[p2p]\nqc_shards = 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	openKeyDir := filepath.Join(dir, "open")
	if err := os.MkdirAll(openKeyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	openKey := filepath.Join(openKeyDir, "validator.key")
	if out, err := exec.Command(bin, "keygen", "--out", openKey).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v %s", err, out)
	}
	if err := os.Chmod(openKey, 0o644); err != nil {
		t.Fatal(err)
	}

	base := []string{"sidecar", "--data-dir", dataDir, "--committee", committee, "--chain-rpc", "http://127.0.0.1:1",
		"--api-listen", "127.0.0.1:0", "--p2p-listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", busyPort)}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
	cases := []struct {
		name string
		args []string
		// onlyLine: nothing but the error on stderr (the failure comes
		// before anything is logged).
		onlyLine bool
		want     []string
	}{
		{"key file open to others", with("--key", openKey), true,
			[]string{"key_file", "--key", "ALLEGRO_KEY_FILE", "mode 0644", "fix: chmod 600 " + openKey}},
		{"committee file missing", with("--committee", filepath.Join(dir, "nope.toml")), true,
			[]string{"committee_file", "--committee", "ALLEGRO_COMMITTEE_FILE", "does not exist", "fix:"}},
		{"invalid flag value", with("--log-level", "loud"), true,
			[]string{"log_level", "--log-level", `"loud"`, "fix: use debug, info, warn or error"}},
		{"invalid file value", with("--config", badFile), true,
			[]string{"p2p.qc_shards", "TOML [p2p] qc_shards", "must be in [1, 256]"}},
		{"invalid chain url", with("--chain-rpc", "ftp://127.0.0.1:1"), true,
			[]string{"chain.url", "--chain-rpc", "scheme must be"}},
		{"mesh port taken", base, false,
			[]string{"p2p.listen_addrs", "--p2p-listen", fmt.Sprintf("127.0.0.1:%d", busyPort), "address already in use", "fix:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(os.Environ(), "ALLEGRO_LOG_LEVEL=info")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit %v, want status 1; stderr:\n%s", err, stderr.String())
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			last := lines[len(lines)-1]
			if tc.onlyLine && len(lines) != 1 {
				t.Errorf("stderr has %d lines, want only the error:\n%s", len(lines), stderr.String())
			}
			if !strings.HasPrefix(last, "allegro sidecar: ") {
				t.Errorf("last line %q is not the error", last)
			}
			for _, l := range lines[:len(lines)-1] {
				if strings.HasPrefix(l, "allegro sidecar: ") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=error") {
					t.Errorf("the error is reported more than once: %q", l)
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(last, w) {
					t.Errorf("error %q lacks %q", last, w)
				}
			}
			for _, bad := range []string{"fx.", "could not build arguments", "failed to build", "system=fx"} {
				if strings.Contains(stderr.String(), bad) {
					t.Errorf("stderr carries fx's trail (%q):\n%s", bad, stderr.String())
				}
			}
		})
	}
}

// TestSidecarWithoutChain: a sidecar whose chain node cannot be reached
// still starts its API, logs the node's URL as unreachable, and its
// readiness names the chain node and why it is not ready.
func TestSidecarWithoutChain(t *testing.T) {
	bin := testkit.Binary(t, "github.com/allegro-mesh/allegro/cmd/allegro")
	dir := t.TempDir()
	key := filepath.Join(dir, "validator.key")
	if out, err := exec.Command(bin, "keygen", "--out", key, "--name", "v0").CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v %s", err, out)
	}
	p2pPort, apiPort := testkit.FreePort(t), testkit.FreePort(t)
	committee := filepath.Join(dir, "committee.toml")
	if out, err := exec.Command(bin, "committee", "--chain-id", "1337", "--out", committee,
		"--key-file", fmt.Sprintf("%s@/ip4/127.0.0.1/tcp/%d", key, p2pPort)).CombinedOutput(); err != nil {
		t.Fatalf("committee: %v %s", err, out)
	}
	closed, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	chainURL := "http://" + closed.Addr().String()
	closed.Close()

	logs := &testkit.SyncBuffer{}
	cmd := exec.Command(bin, "sidecar", "--data-dir", dir, "--committee", committee, "--chain-rpc", chainURL,
		"--api-listen", fmt.Sprintf("127.0.0.1:%d", apiPort), "--p2p-listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", p2pPort))
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("sidecar exited with %v after SIGTERM:\n%s", err, logs)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("sidecar did not stop within 30 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("sidecar log:\n%s", logs)
		}
	})
	testkit.Eventually(t, 20*time.Second, "the unreachable chain node logged with its URL", func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, `msg="chain node unreachable"`) && strings.Contains(l, "url="+chainURL) && strings.Contains(l, "attempts=1") {
				return true
			}
		}
		return false
	})
	var body string
	testkit.Eventually(t, 20*time.Second, "/readyz to answer", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", apiPort))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	var ready struct {
		Ready  bool `json:"ready"`
		Checks []struct {
			Name   string `json:"name"`
			OK     bool   `json:"ok"`
			Detail string `json:"detail"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &ready); err != nil {
		t.Fatalf("readyz %q: %v", body, err)
	}
	found := false
	for _, c := range ready.Checks {
		if c.Name == "chain_reachable" {
			found = true
			if c.OK || !strings.Contains(c.Detail, chainURL) || !strings.Contains(c.Detail, "unreachable") {
				t.Errorf("chain_reachable check %+v: want not ok, naming %s as unreachable", c, chainURL)
			}
		}
	}
	if ready.Ready || !found {
		t.Fatalf("readyz: %s", body)
	}
}
