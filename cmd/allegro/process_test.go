package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/tempo/devchain"
)

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// buildBinary compiles cmd/allegro into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "allegro")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	return bin
}

// TestSidecarProcesses: four `allegro sidecar` processes started from the
// command line with a generated committee form a mesh on a dev chain and
// certify a payment submitted over HTTP to one of them.
func TestSidecarProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildBinary(t)
	dir := t.TempDir()

	chain, err := devchain.New(devchain.Config{BlockPeriod: 500 * time.Millisecond, LoadAccounts: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := chain.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chain.Stop(context.Background()) })

	const n = 4
	p2pPorts, apiPorts := make([]int, n), make([]int, n)
	var keyArgs []string
	for i := range n {
		p2pPorts[i], apiPorts[i] = freePort(t), freePort(t)
		dataDir := filepath.Join(dir, fmt.Sprintf("v%d", i))
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "keygen", "--out", filepath.Join(dataDir, "validator.key"), "--name", fmt.Sprintf("v%d", i)).CombinedOutput()
		if err != nil {
			t.Fatalf("keygen: %v %s", err, out)
		}
		keyArgs = append(keyArgs, "--key-file", fmt.Sprintf("%s@/ip4/127.0.0.1/tcp/%d", filepath.Join(dataDir, "validator.key"), p2pPorts[i]))
	}
	committee := filepath.Join(dir, "committee.toml")
	if out, err := exec.Command(bin, append([]string{"committee", "--chain-id", "1337", "--out", committee}, keyArgs...)...).CombinedOutput(); err != nil {
		t.Fatalf("committee: %v %s", err, out)
	}

	procs := make([]*exec.Cmd, n)
	logs := make([]*bytes.Buffer, n)
	for i := range n {
		logs[i] = &bytes.Buffer{}
		cmd := exec.Command(bin, "sidecar",
			"--data-dir", filepath.Join(dir, fmt.Sprintf("v%d", i)),
			"--committee", committee,
			"--chain-rpc", chain.WSEndpoint(),
			"--api-listen", fmt.Sprintf("127.0.0.1:%d", apiPorts[i]),
			"--p2p-listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", p2pPorts[i]),
		)
		cmd.Env = append(os.Environ(), "ALLEGRO_LOG_LEVEL=info")
		cmd.Stdout, cmd.Stderr = logs[i], logs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = cmd
	}
	defer func() {
		for i, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- p.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("sidecar %d exited with %v after SIGTERM:\n%s", i, err, logs[i])
				}
			case <-time.After(30 * time.Second):
				_ = p.Process.Kill()
				t.Errorf("sidecar %d did not stop within 30 s of SIGTERM", i)
			}
		}
		if t.Failed() {
			for i := range logs {
				t.Logf("sidecar %d log:\n%s", i, logs[i])
			}
		}
	}()

	// Every sidecar becomes healthy and sees its three peers.
	for i := range n {
		waitHTTP(t, ctx, fmt.Sprintf("http://127.0.0.1:%d/api/v1/committee", apiPorts[i]), func(body []byte) bool {
			var c struct {
				Members []struct {
					Connected bool `json:"connected"`
				} `json:"members"`
			}
			if json.Unmarshal(body, &c) != nil {
				return false
			}
			connected := 0
			for _, m := range c.Members {
				if m.Connected {
					connected++
				}
			}
			return connected == n
		})
	}

	alice, bob := devchain.DemoAccounts()[0], devchain.DemoAccounts()[1]
	tx, err := devchain.SignTransfer(alice.Key, 0, bob.Address, big.NewInt(10*devchain.Dollar), big.NewInt(1337), 0, devchain.Fees{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tx.MarshalBinary()
	body, _ := json.Marshal(map[string]any{
		"tempo_tx":        "0x" + hex.EncodeToString(raw),
		"tempo_tx_format": "EVM_OPAQUE_BYTES_V1",
		"nonce_seq":       "0",
		"expiry":          map[string]string{"max_block_height": "1000000"},
	})
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/api/v1/submit-raw-tx?wait=qc&timeout_ms=20000", apiPorts[0]), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	respBody, _ := io.ReadAll(resp.Body)
	var got struct {
		TxHash   string `json:"tx_hash"`
		QCFormed bool   `json:"qc_formed"`
		QC       *struct {
			Certs []json.RawMessage `json:"certs"`
		} `json:"qc"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(respBody, &got) != nil || !got.QCFormed || got.QC == nil || len(got.QC.Certs) < 3 {
		t.Fatalf("submit-raw-tx: %d %s", resp.StatusCode, respBody)
	}
	// Another sidecar serves the same QC.
	waitHTTP(t, ctx, fmt.Sprintf("http://127.0.0.1:%d/api/v1/tx/%s/qc", apiPorts[3], got.TxHash), func(b []byte) bool {
		return strings.Contains(string(b), `"qc_hash"`)
	})
}

// waitHTTP polls url until ok(body) holds for a 200 answer.
func waitHTTP(t *testing.T, ctx context.Context, url string, ok func([]byte) bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && ok(b) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", url)
}
