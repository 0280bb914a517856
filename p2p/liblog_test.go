package p2p

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestLibp2pHandler: libp2p's errors reach the sidecar's handler, tagged;
// its lower levels and its fx app's records do not.
func TestLibp2pHandler(t *testing.T) {
	var buf bytes.Buffer
	h := libp2pHandler{h: slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}).WithAttrs([]slog.Attr{slog.String("component", "libp2p")})}
	base := slog.New(h).With("logger", "p2p-config")
	base.Error("swarm failed", "err", "boom")
	base.Warn("chatty warning")
	base.With("system", "fx").Error("OnStart hook failed", "error", "bind: address already in use")
	base.WithGroup("g").With("system", "other").Error("grouped error")
	out := buf.String()
	for _, want := range []string{`msg="swarm failed"`, "component=libp2p", "logger=p2p-config", `msg="grouped error"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"chatty warning", "OnStart hook failed"} {
		if strings.Contains(out, bad) {
			t.Errorf("log carries %q:\n%s", bad, out)
		}
	}
}
