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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/tempo/devchain"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// procCluster is a dev chain (in this process) and n `allegro sidecar`
// processes with a generated committee, all on loopback.
type procCluster struct {
	t        *testing.T
	bin      string
	chain    *devchain.Chain
	apiPorts []int
	args     [][]string // each sidecar's command line
	procs    []*exec.Cmd
	logs     []*bytes.Buffer // read only after the processes ended
}

// startSidecars starts the chain with chainCfg and n sidecars; extraArgs(i)
// adds flags to sidecar i's command line (nil: none). Cleanup stops them
// with SIGTERM and fails the test if one does not exit cleanly.
func startSidecars(t *testing.T, n int, chainCfg devchain.Config, extraArgs func(i int) []string) *procCluster {
	t.Helper()
	bin := testkit.Binary(t, "github.com/allegro-mesh/allegro/cmd/allegro")
	dir := t.TempDir()

	chain, err := devchain.New(chainCfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := chain.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chain.Stop(context.Background()) })

	p2pPorts, apiPorts := make([]int, n), make([]int, n)
	var keyArgs []string
	for i := range n {
		p2pPorts[i], apiPorts[i] = testkit.FreePort(t), testkit.FreePort(t)
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

	pc := &procCluster{t: t, bin: bin, chain: chain, apiPorts: apiPorts, args: make([][]string, n), procs: make([]*exec.Cmd, n), logs: make([]*bytes.Buffer, n)}
	t.Cleanup(func() {
		for i, p := range pc.procs {
			if p == nil {
				continue
			}
			_ = p.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- p.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("sidecar %d exited with %v after SIGTERM:\n%s", i, err, pc.logs[i])
				}
			case <-time.After(30 * time.Second):
				_ = p.Process.Kill()
				<-done
				t.Errorf("sidecar %d did not stop within 30 s of SIGTERM", i)
			}
		}
		if t.Failed() {
			for i := range pc.logs {
				t.Logf("sidecar %d log:\n%s", i, pc.logs[i])
			}
		}
	})
	for i := range n {
		pc.logs[i] = &bytes.Buffer{}
		pc.args[i] = []string{"sidecar",
			"--data-dir", filepath.Join(dir, fmt.Sprintf("v%d", i)),
			"--committee", committee,
			"--chain-rpc", chain.WSEndpoint(),
			"--api-listen", fmt.Sprintf("127.0.0.1:%d", apiPorts[i]),
			"--p2p-listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", p2pPorts[i]),
		}
		if extraArgs != nil {
			pc.args[i] = append(pc.args[i], extraArgs(i)...)
		}
		pc.start(i)
	}
	return pc
}

// start starts sidecar i (again, after kill: same data directory and
// ports); its log goes on in the same buffer.
func (pc *procCluster) start(i int) {
	pc.t.Helper()
	fmt.Fprintf(pc.logs[i], "---- started %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(pc.bin, pc.args[i]...)
	cmd.Env = append(os.Environ(), "ALLEGRO_LOG_LEVEL=info")
	cmd.Stdout, cmd.Stderr = pc.logs[i], pc.logs[i]
	if err := cmd.Start(); err != nil {
		pc.t.Fatal(err)
	}
	pc.procs[i] = cmd
}

// kill ends sidecar i with SIGKILL: nothing is flushed or closed.
func (pc *procCluster) kill(i int) {
	if p := pc.procs[i]; p != nil {
		_ = p.Process.Signal(syscall.SIGKILL)
		_ = p.Wait()
		pc.procs[i] = nil
	}
}

// api returns sidecar i's API base URL.
func (pc *procCluster) api(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", pc.apiPorts[i]) }

// waitMesh waits until every sidecar sees every member connected, then
// until each is ready.
func (pc *procCluster) waitMesh(t *testing.T, ctx context.Context) {
	t.Helper()
	n := len(pc.procs)
	for i := range n {
		testkit.WaitHTTP(t, ctx, pc.api(i)+"/api/v1/committee", func(body []byte) bool {
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
	for i := range n {
		testkit.WaitHTTP(t, ctx, pc.api(i)+"/readyz", func(body []byte) bool { return strings.Contains(string(body), `"ready":true`) })
	}
}

// payment is the submit-raw-tx body of a $1 transfer from a to bob with
// nonce.
func payment(t *testing.T, a devkit.Account, nonce uint64, dollars int64) []byte {
	t.Helper()
	bob := devkit.DemoAccounts()[1]
	tx, err := devkit.SignTransfer(a.Key, nonce, bob.Address, big.NewInt(dollars*devkit.Dollar), big.NewInt(1337), 0, devkit.Fees{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tx.MarshalBinary()
	body, _ := json.Marshal(map[string]any{
		"tempo_tx":        "0x" + hex.EncodeToString(raw),
		"tempo_tx_format": "EVM_OPAQUE_BYTES_V1",
		"nonce_seq":       strconv.FormatUint(nonce, 10),
		"expiry":          map[string]string{"max_block_height": "1000000"},
	})
	return body
}

// submittedQC is what a submit-raw-tx?wait=qc answer says of the QC.
type submittedQC struct {
	TxHash   string `json:"tx_hash"`
	QCFormed bool   `json:"qc_formed"`
	QC       *struct {
		Certs []json.RawMessage `json:"certs"`
	} `json:"qc"`
}

// submitForQC submits body to api and waits (up to 20 s) for the QC.
func submitForQC(ctx context.Context, api string, body []byte) (submittedQC, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/api/v1/submit-raw-tx?wait=qc&timeout_ms=20000", bytes.NewReader(body))
	if err != nil {
		return submittedQC{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return submittedQC{}, err
	}
	defer resp.Body.Close()
	respBody, _ := io.ReadAll(resp.Body)
	var got submittedQC
	if resp.StatusCode != http.StatusOK || json.Unmarshal(respBody, &got) != nil || !got.QCFormed || got.QC == nil || len(got.QC.Certs) < 3 {
		return got, fmt.Errorf("submit-raw-tx: %d %s", resp.StatusCode, respBody)
	}
	return got, nil
}

// TestSidecarProcesses: four `allegro sidecar` processes started from the
// command line with a generated committee form a mesh on a dev chain,
// become ready and certify a payment submitted over HTTP to one of them.
func TestSidecarProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pc := startSidecars(t, 4, devchain.Config{BlockPeriod: 500 * time.Millisecond, LoadAccounts: -1}, nil)
	pc.waitMesh(t, ctx)

	got, err := submitForQC(ctx, pc.api(0), payment(t, devkit.DemoAccounts()[0], 0, 10))
	if err != nil {
		t.Fatal(err)
	}
	// Another sidecar serves the same QC.
	testkit.WaitHTTP(t, ctx, fmt.Sprintf("%s/api/v1/tx/%s/qc", pc.api(3), got.TxHash), func(b []byte) bool {
		return strings.Contains(string(b), `"qc_hash"`)
	})
}

func TestMain(m *testing.M) { os.Exit(testkit.MainWithCleanup(m)) }
