package node_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/node/nodetest"
)

// repeatedKey returns the first top-level key line's JSON object names
// twice, or "" when every key is unique.
func repeatedKey(line string) (string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", fmt.Errorf("not a JSON object: %v", err)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", err
		}
		key := tok.(string)
		if seen[key] {
			return key, nil
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", err
		}
	}
	return "", nil
}

// TestLogLinesHaveUniqueKeys: every line a committee logs at debug level
// while starting and certifying a payment names each key once, so JSON
// logs stay valid objects for collectors (a sub-part of a component is a
// "subsystem", not a second "component").
func TestLogLinesHaveUniqueKeys(t *testing.T) {
	var out testkit.SyncBuffer
	logger := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cl := nodetest.New(t, 4, chainID, nodetest.Funded(), nodetest.WithLogger(logger))
	cl.StartAll()
	cl.WaitMesh(20 * time.Second)
	cl.PayToQC(0, nodetest.Pay{Key: nodetest.Alice, ChainID: chainID, Recipient: nodetest.Address(nodetest.Bob), Amount: 1}.Request(t), 20*time.Second)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 10 {
		t.Fatalf("only %d log lines: the check would pass vacuously", len(lines))
	}
	for _, l := range lines {
		key, err := repeatedKey(l)
		if err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if key != "" {
			t.Errorf("key %q repeated: %s", key, l)
		}
	}
}
