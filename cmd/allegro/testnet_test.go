package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/deploy/testnet"
	"github.com/allegro-mesh/allegro/sidecar"
)

func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.Write([]byte(`{"status":"ok"}`))
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"status":"unavailable"}`))
		case "/rpc":
			if r.Method != http.MethodPost {
				w.WriteHeader(http.StatusMethodNotAllowed)
				return
			}
			w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":"0x2a"}`))
		case "/rpc-error":
			w.Write([]byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"syncing"}}`))
		}
	}))
	defer srv.Close()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--url", srv.URL + "/healthz"}, 0, "healthy"},
		{[]string{"--url", srv.URL + "/down"}, 1, "503"},
		{[]string{"--jsonrpc", "--url", srv.URL + "/rpc"}, 0, "block 0x2a"},
		{[]string{"--jsonrpc", "--url", srv.URL + "/rpc-error"}, 1, "syncing"},
		{[]string{"--url", "http://127.0.0.1:1/healthz", "--timeout", "500ms"}, 1, "unhealthy"},
		{[]string{"--url", "localhost:7070"}, 1, "--url"},
		{[]string{"--url", srv.URL + "/healthz", "--timeout", "0s"}, 1, "--timeout"},
	}
	for _, tc := range cases {
		out, code := runCLI(t, append([]string{"healthcheck"}, tc.args...)...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("healthcheck %v: exit %d %q, want %d and %q", tc.args, code, out, tc.code, tc.want)
		}
	}
}

func TestTestnetGen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	out, code := runCLI(t, "testnet", "gen", "--out", dir, "--validators", "7", "--light-clients", "2",
		"--byzantine", "v7=invalid-signatures", "--project", "allegro-e2e-cli", "--api-port-base", "9001")
	if code != 0 || !strings.Contains(out, "7 validators (f=2, quorum 5)") || !strings.Contains(out, "BYZANTINE invalid-signatures") {
		t.Fatalf("testnet gen: %d %s", code, out)
	}
	m, err := testnet.LoadManifest(dir)
	if err != nil || m.Sidecars[6].Byzantine != sidecar.ByzantineInvalidSignatures || m.Sidecars[0].API != "127.0.0.1:9001" {
		t.Fatalf("manifest %+v %v", m, err)
	}
	if _, err := committee.LoadFile(filepath.Join(dir, testnet.CommitteeFile)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"testnet"}, "usage"},
		{[]string{"testnet", "gen"}, "--out"},
		{[]string{"testnet", "gen", "--out", t.TempDir(), "--byzantine", "v1"}, ""}, // the flag package reports it
		{[]string{"testnet", "gen", "--out", t.TempDir(), "--byzantine", "v1=equivocate", "--test-network=false"}, "TestNetwork"},
		{[]string{"testnet", "gen", "--out", dir}, "already exists"},
	} {
		out, code := runCLI(t, tc.args...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d %q, want an error with %q", tc.args, code, out, tc.want)
		}
	}
}
