package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/tempo/devchain"
)

// sidecarProcs runs `allegro sidecar` processes of one committee that can be
// killed and restarted on the same data directories and ports.
type sidecarProcs struct {
	t         *testing.T
	bin, dir  string
	committee string
	chainURL  string
	p2p, api  []int
	procs     []*exec.Cmd
	logs      []*bytes.Buffer
}

func newSidecarProcs(t *testing.T, bin string, n int, chainURL string) *sidecarProcs {
	t.Helper()
	s := &sidecarProcs{t: t, bin: bin, dir: t.TempDir(), chainURL: chainURL,
		p2p: make([]int, n), api: make([]int, n), procs: make([]*exec.Cmd, n), logs: make([]*bytes.Buffer, n)}
	var keyArgs []string
	for i := range n {
		s.p2p[i], s.api[i] = freePort(t), freePort(t)
		dataDir := s.dataDir(i)
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "keygen", "--out", filepath.Join(dataDir, "validator.key"), "--name", fmt.Sprintf("v%d", i)).CombinedOutput()
		if err != nil {
			t.Fatalf("keygen: %v %s", err, out)
		}
		keyArgs = append(keyArgs, "--key-file", fmt.Sprintf("%s@/ip4/127.0.0.1/tcp/%d", filepath.Join(dataDir, "validator.key"), s.p2p[i]))
	}
	s.committee = filepath.Join(s.dir, "committee.toml")
	if out, err := exec.Command(bin, append([]string{"committee", "--chain-id", "1337", "--out", s.committee}, keyArgs...)...).CombinedOutput(); err != nil {
		t.Fatalf("committee: %v %s", err, out)
	}
	t.Cleanup(func() {
		for i := range s.procs {
			s.kill(i)
		}
		if t.Failed() {
			for i, l := range s.logs {
				if l != nil {
					t.Logf("sidecar %d log:\n%s", i, l)
				}
			}
		}
	})
	return s
}

func (s *sidecarProcs) dataDir(i int) string { return filepath.Join(s.dir, fmt.Sprintf("v%d", i)) }

func (s *sidecarProcs) url(i int, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.api[i], path)
}

// start starts sidecar i; its log is kept across restarts.
func (s *sidecarProcs) start(i int) {
	s.t.Helper()
	if s.logs[i] == nil {
		s.logs[i] = &bytes.Buffer{}
	}
	fmt.Fprintf(s.logs[i], "---- start at %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(s.bin, "sidecar",
		"--data-dir", s.dataDir(i),
		"--committee", s.committee,
		"--chain-rpc", s.chainURL,
		"--api-listen", fmt.Sprintf("127.0.0.1:%d", s.api[i]),
		"--p2p-listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", s.p2p[i]),
	)
	cmd.Env = append(os.Environ(), "ALLEGRO_LOG_LEVEL=info")
	cmd.Stdout, cmd.Stderr = s.logs[i], s.logs[i]
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.procs[i] = cmd
}

// kill ends sidecar i with SIGKILL: nothing is flushed or closed.
func (s *sidecarProcs) kill(i int) {
	if p := s.procs[i]; p != nil {
		_ = p.Process.Signal(syscall.SIGKILL)
		_ = p.Wait()
		s.procs[i] = nil
	}
}

// waitConnected waits until sidecar i sees want committee members
// (itself included) connected.
func (s *sidecarProcs) waitConnected(ctx context.Context, i, want int) {
	s.t.Helper()
	waitHTTP(s.t, ctx, s.url(i, "/api/v1/committee"), func(body []byte) bool {
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
		return connected >= want
	})
}

// TestSignedAloneSurvivesSIGKILL: three of four sidecars are killed, a
// payment is submitted to the fourth (which signs it alone), then it is
// killed too, and all four start again. Nobody resubmits: the payment gets
// its QC and settles, from what the fourth wrote before it signed.
func TestSignedAloneSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildBinary(t)
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
	s := newSidecarProcs(t, bin, n, chain.WSEndpoint())
	for i := range n {
		s.start(i)
	}
	for i := range n {
		s.waitConnected(ctx, i, n)
	}
	for i := 1; i < n; i++ {
		s.kill(i)
	}

	alice, bob := devchain.DemoAccounts()[0], devchain.DemoAccounts()[1]
	tx, err := devchain.SignTransfer(alice.Key, 0, bob.Address, big.NewInt(3*devchain.Dollar), big.NewInt(1337), 0, devchain.Fees{})
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
	resp, err := http.Post(s.url(0, "/api/v1/submit-raw-tx"), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	respBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got struct {
		TxHash string `json:"tx_hash"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(respBody, &got) != nil || got.TxHash == "" {
		t.Fatalf("submit-raw-tx with three sidecars down: %d %s", resp.StatusCode, respBody)
	}
	s.kill(0)

	for i := range n {
		s.start(i)
	}
	for i := range n {
		waitHTTP(t, ctx, s.url(i, "/api/v1/tx/"+got.TxHash+"/status"), func(b []byte) bool {
			var st struct {
				QCFormed bool   `json:"qc_formed"`
				Stage    string `json:"stage"`
			}
			return json.Unmarshal(b, &st) == nil && st.QCFormed
		})
	}
	// The entry sidecar still had the raw transaction after the restart, so
	// the QC does not stay a promise: it settles.
	waitHTTP(t, ctx, s.url(0, "/api/v1/tx/"+got.TxHash+"/status"), func(b []byte) bool {
		var st struct {
			Stage string `json:"stage"`
		}
		return json.Unmarshal(b, &st) == nil && (st.Stage == "INCLUDED" || st.Stage == "FINALIZED")
	})
}
