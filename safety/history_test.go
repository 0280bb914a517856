package safety

import (
	"bytes"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/qc"
)

func historyJSONBytes(t *testing.T, h *History) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := h.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestHistoryRoundTrip: a history survives its JSON form byte for byte,
// including the indexes rebuilt after decoding (adding a known record
// again does not duplicate it).
func TestHistoryRoundTrip(t *testing.T) {
	f := newFixture(t)
	f.h.ChainNonces = map[qc.Address]uint64{alice: 2}
	first := historyJSONBytes(t, f.h)
	back, err := ReadHistory(bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	if second := historyJSONBytes(t, back); !bytes.Equal(first, second) {
		t.Fatalf("JSON differs after a round trip:\n%s\n----\n%s", first, second)
	}
	if len(back.Certificates) != len(f.h.Certificates) || len(back.QCs) != len(f.h.QCs) || len(back.Evidence) != 1 ||
		len(back.LightClientQCs) != 2 || len(back.Txs) != len(f.h.Txs) || back.InitialBalances[bob].Cmp(big.NewInt(5)) != 0 {
		t.Fatal("records lost in the round trip")
	}
	n := len(back.Certificates)
	back.AddCertificate("v0", back.Certificates[0].Cert)
	back.AddQC("v0", back.QCs[0].QC)
	back.AddLightClientQC("lc1", back.LightClientQCs[0].Raw)
	if len(back.Certificates) != n || len(back.QCs) != len(f.h.QCs) || len(back.LightClientQCs) != 2 {
		t.Fatal("re-adding known records after decoding duplicated them")
	}
}

func TestReadHistoryRejects(t *testing.T) {
	good := string(historyJSONBytes(t, newFixture(t).h))
	cases := []struct {
		name   string
		mutate func(string) string
		want   string
	}{
		{"unknown field", func(s string) string {
			return strings.Replace(s, `"version": 1,`, `"version": 1, "surprise": true,`, 1)
		}, "surprise"},
		{"future version", func(s string) string { return strings.Replace(s, `"version": 1,`, `"version": 9,`, 1) }, "version 9"},
		{"short token", func(s string) string {
			return strings.Replace(s, `"token": "0x20c0000000000000000000000000000000000001"`, `"token": "0x20c0"`, 1)
		}, "token"},
		{"negative balance", func(s string) string {
			return strings.Replace(s, `": "100"`, `": "-100"`, 1)
		}, "initial_balances"},
		{"not JSON", func(string) string { return "{" }, "decode history"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.mutate(good)
			if in == good {
				t.Fatal("mutation did not apply")
			}
			_, err := ReadHistory(strings.NewReader(in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestMerge: histories collected at several points combine into one that
// checks like the whole.
func TestMerge(t *testing.T) {
	f := newFixture(t)
	// Split the fixture: sidecar v0's view in one history, the rest in another.
	a, b := NewHistory(f.h.Committee, f.h.Token), NewHistory(f.h.Committee, f.h.Token)
	for _, r := range f.h.Certificates {
		for _, s := range r.SeenBy {
			if s == "v0" {
				a.AddCertificate(s, r.Cert)
			} else {
				b.AddCertificate(s, r.Cert)
			}
		}
	}
	for _, r := range f.h.QCs {
		for _, s := range r.SeenBy {
			a.AddQC(s, r.QC)
		}
	}
	for _, r := range f.h.Evidence {
		for _, s := range r.ReportedBy {
			b.AddEvidence(s, r.Evidence)
		}
	}
	for _, l := range f.h.LightClientQCs {
		b.AddLightClientQC(l.Client, l.Raw)
	}
	for _, tx := range f.h.Txs {
		for _, st := range tx.Statuses {
			b.AddStatus(tx.TxHash, st)
		}
	}
	a.Sources, b.Sources = f.h.Sources[:2], f.h.Sources[2:]
	a.InitialBalances = f.h.InitialBalances
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	if err := a.Merge(b); err != nil { // idempotent for records
		t.Fatal(err)
	}
	if len(a.Certificates) != len(f.h.Certificates) || len(a.QCs) != len(f.h.QCs) || len(a.Evidence) != len(f.h.Evidence) {
		t.Fatalf("merged %d certs %d QCs %d evidence, want %d %d %d", len(a.Certificates), len(a.QCs), len(a.Evidence),
			len(f.h.Certificates), len(f.h.QCs), len(f.h.Evidence))
	}
	if r := Check(a, f.run); !r.OK() || len(r.Byzantine) != 1 {
		t.Fatalf("merged history: %v, Byzantine %d", kinds(r), len(r.Byzantine))
	}
	other := f.h.Committee
	other.Epoch++
	if err := a.Merge(NewHistory(other, f.h.Token)); err == nil {
		t.Fatal("merged histories of different committees")
	}
}

func TestRunRoundTrip(t *testing.T) {
	f := newFixture(t)
	var first bytes.Buffer
	if err := f.run.WriteJSON(&first); err != nil {
		t.Fatal(err)
	}
	back, err := ReadRun(bytes.NewReader(first.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var second bytes.Buffer
	if err := back.WriteJSON(&second); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Fatalf("run JSON differs after a round trip:\n%s\n----\n%s", first.String(), second.String())
	}
	if back.Payments[1].ParentTx != f.txs["pay1"] || back.Payments[0].Sender != alice || !back.Phases[1].NoQuorum ||
		!back.Payments[0].QCAt.Equal(f.run.Payments[0].QCAt) {
		t.Fatal("fields lost in the run round trip")
	}
	if r := Check(f.h, back); !r.OK() {
		t.Fatalf("fixture with the decoded run: %v", kinds(r))
	}
	if _, err := ReadRun(strings.NewReader(`{"version":1,"payments":[{"tx_hash":"0x12"}]}`)); err == nil || !strings.Contains(err.Error(), "payments[0].tx_hash") {
		t.Fatalf("bad tx hash: %v", err)
	}
}

func TestReportJSON(t *testing.T) {
	f := newFixture(t)
	f.h.AddQC("v1", withDuplicateSigner(f.qcs["pay1"]))
	r := Check(f.h, f.run)
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back struct {
		OK         bool        `json:"ok"`
		Violations []Violation `json:"violations"`
		Payments   struct {
			Sent int `json:"sent"`
		} `json:"payments"`
		Phases []struct {
			Name     string `json:"name"`
			TimeToQC struct {
				P50 time.Duration `json:"p50_ns"`
			} `json:"time_to_qc"`
		} `json:"phases"`
	}
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.OK || len(back.Violations) != 1 || back.Violations[0].Kind != KindHonestServedInvalid ||
		back.Violations[0].Sources[0] != "v1" || back.Payments.Sent != 7 || back.Phases[0].TimeToQC.P50 != 70*time.Millisecond {
		t.Fatalf("report JSON: %s", buf.String())
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "honest_served_invalid ×1") {
		t.Fatalf("Err() = %v", err)
	}
}

// TestCollectConfigValidate: each bad field is named.
func TestCollectConfigValidate(t *testing.T) {
	valid := func() CollectConfig {
		return CollectConfig{Sidecars: []Sidecar{{Name: "v0", APIURL: "http://127.0.0.1:7070", Honest: true}}, CommitteeFile: "committee.toml"}
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*CollectConfig)
		want   string
	}{
		{"no sidecars", func(c *CollectConfig) { c.Sidecars = nil }, "Sidecars"},
		{"unnamed sidecar", func(c *CollectConfig) { c.Sidecars[0].Name = "" }, "Sidecars[0].Name"},
		{"duplicate sidecar", func(c *CollectConfig) { c.Sidecars = append(c.Sidecars, c.Sidecars[0]) }, "Sidecars[1].Name"},
		{"bad URL", func(c *CollectConfig) { c.Sidecars[0].APIURL = "127.0.0.1:7070" }, "Sidecars[0].APIURL"},
		{"no committee", func(c *CollectConfig) { c.CommitteeFile = "" }, "CommitteeFile"},
		{"light client named like a sidecar", func(c *CollectConfig) { c.LightClientQCs = map[string][][]byte{"v0": nil} }, "LightClientQCs"},
		{"negative balance", func(c *CollectConfig) { c.InitialBalances = map[qc.Address]*big.Int{alice: big.NewInt(-1)} }, "InitialBalances"},
		{"page size", func(c *CollectConfig) { c.PageSize = -1 }, "PageSize"},
		{"max pages", func(c *CollectConfig) { c.MaxPages = -1 }, "MaxPages"},
		{"max lookups", func(c *CollectConfig) { c.MaxTxLookups = -1 }, "MaxTxLookups"},
		{"concurrency", func(c *CollectConfig) { c.Concurrency = 1000 }, "Concurrency"},
		{"request timeout", func(c *CollectConfig) { c.RequestTimeout = -time.Second }, "RequestTimeout"},
		{"timeout", func(c *CollectConfig) { c.Timeout = -time.Second }, "Timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
	if err := (CheckOptions{ClockTolerance: -time.Second}).Validate(); err == nil || !strings.Contains(err.Error(), "ClockTolerance") {
		t.Fatalf("CheckOptions: %v", err)
	}
}

func TestCheckFiles(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	hp, rp := dir+"/history.json", dir+"/run.json"
	if err := f.h.WriteFile(hp); err != nil {
		t.Fatal(err)
	}
	if err := f.run.WriteFile(rp); err != nil {
		t.Fatal(err)
	}
	for _, run := range []string{rp, ""} {
		r, err := CheckFiles(hp, run)
		if err != nil || !r.OK() || (r.Payments != nil) != (run != "") {
			t.Fatalf("run %q: %v %v", run, err, r)
		}
	}
	if _, err := CheckFiles(dir+"/missing.json", ""); err == nil {
		t.Fatal("missing history file accepted")
	}
}
