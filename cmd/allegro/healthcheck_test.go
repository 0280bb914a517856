package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
