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

// TestPubsubLogHandler: pubsub's warning about a delivery tag it cannot bump
// (logged at every delivery: the connection manager has no decaying tags on
// purpose) is dropped; its other records pass with their attributes.
func TestPubsubLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(pubsubLogHandler{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})}).With("subsystem", "pubsub")
	log.Warn(noDeliveryTag, "err", "no decaying tag registered for topic /allegro/1337/1/tx/2")
	log.WithGroup("g").Warn(noDeliveryTag, "err", "again")
	log.Warn("unable to create decaying delivery tag", "err", "boom")
	log.WithGroup("g").Info("joined", "topic", "t")
	out := buf.String()
	if strings.Contains(out, noDeliveryTag) {
		t.Errorf("the delivery tag warning was logged:\n%s", out)
	}
	for _, want := range []string{`msg="unable to create decaying delivery tag"`, "subsystem=pubsub", "g.topic=t"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
