package bench

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	c := DefaultConfig()
	c.StartSidecar = func([]string) *exec.Cmd { return nil }
	return c
}

func TestConfigValidate(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" means valid
	}{
		{"no sections", func(c *Config) { c.Sections = nil }, "Sections"},
		{"unknown section", func(c *Config) { c.Sections = []string{"latency", "speed"} }, `"speed"`},
		{"no chain id", func(c *Config) { c.ChainID = 0 }, "ChainID"},
		{"committee too large", func(c *Config) { c.Validators = []int{4, 101} }, "Validators"},
		{"committee of zero", func(c *Config) { c.Validators = []int{0} }, "Validators"},
		{"no sizes for latency", func(c *Config) { c.Validators = nil }, "Validators is empty"},
		{"no sizes without latency is fine", func(c *Config) { c.Validators = nil; c.Sections = []string{SectionThroughput} }, ""},
		{"latency payments", func(c *Config) { c.LatencyPayments = 0 }, "LatencyPayments"},
		{"negative latency warm-up", func(c *Config) { c.LatencyWarmup = -1 }, "LatencyWarmup"},
		{"negative case time", func(c *Config) { c.LatencyCaseTime = -time.Second }, "LatencyCaseTime"},
		{"payments", func(c *Config) { c.Payments = 0 }, "Payments"},
		{"negative warm-up", func(c *Config) { c.Warmup = -1 }, "Warmup"},
		{"streams", func(c *Config) { c.Streams = 0 }, "Streams"},
		{"recipient payments", func(c *Config) { c.RecipientPayments = -1 }, "RecipientPayments"},
		{"poll interval", func(c *Config) { c.PollInterval = 0 }, "PollInterval"},
		{"cost time", func(c *Config) { c.CostTime = 0 }, "CostTime"},
		{"negative link latency", func(c *Config) { c.LinkLatency = -time.Millisecond }, "LinkLatency"},
		{"no link latency is fine", func(c *Config) { c.LinkLatency = 0 }, ""},
		{"throughput validators", func(c *Config) { c.ThroughputValidators = 0 }, "ThroughputValidators"},
		{"resource validators", func(c *Config) { c.ResourceValidators = 0 }, "ResourceValidators"},
		{"resource payments", func(c *Config) { c.ResourcePayments = 0 }, "ResourcePayments"},
		{"no sidecar starter", func(c *Config) { c.StartSidecar = nil }, "StartSidecar"},
		{"no sidecar starter without resources", func(c *Config) {
			c.StartSidecar = nil
			c.Sections = []string{SectionCost, SectionMesh}
		}, ""},
		{"negative progress interval", func(c *Config) { c.ProgressInterval = -1 }, "ProgressInterval"},
		{"quic first", func(c *Config) { c.Transport = "quic" }, ""},
		{"unknown transport", func(c *Config) { c.Transport = "udp" }, "Transport"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestSidecarArgsRoundTrip(t *testing.T) {
	want := SidecarProcessConfig{Index: 2, Validators: 4, ChainID: 77, Senders: 9, Dir: "/tmp/x y", LogLevel: "info", Transport: "quic"}
	var out strings.Builder
	got, err := ParseSidecarArgs(want.Args(), &out)
	if err != nil || got != want {
		t.Fatalf("ParseSidecarArgs(Args()) = %+v, %v; want %+v", got, err, want)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"index out of range", []string{"--index", "4", "--validators", "4", "--dir", "d"}, "index"},
		{"no dir", []string{"--index", "0"}, "dir"},
		{"no senders", []string{"--senders", "0", "--dir", "d"}, "senders"},
		{"no chain id", []string{"--chain-id", "0", "--dir", "d"}, "chain-id"},
		{"stray argument", []string{"--dir", "d", "extra"}, "unexpected"},
		{"unknown flag", []string{"--nope"}, "nope"},
		{"unknown transport", []string{"--dir", "d", "--transport", "udp"}, "transport"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			_, err := ParseSidecarArgs(tc.args, &out)
			if err == nil || !strings.Contains(err.Error()+out.String(), tc.want) {
				t.Errorf("ParseSidecarArgs(%v) = %v, want an error about %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestLoadGeneratorArgsRoundTrip(t *testing.T) {
	want := LoadGeneratorConfig{Endpoints: []string{"127.0.0.1:1", "127.0.0.1:2"}, ChainID: 77, Streams: 9, Warmup: 3, Payments: 11, ProgressInterval: 2 * time.Second}
	args := want.Args()
	if len(args) == 0 || args[0] != loadGeneratorArg {
		t.Fatalf("Args() = %v, want %s first (SidecarMain dispatches on it)", args, loadGeneratorArg)
	}
	var out strings.Builder
	got, err := parseLoadGeneratorArgs(args[1:], &out)
	if err != nil || !slices.Equal(got.Endpoints, want.Endpoints) || got.ChainID != want.ChainID || got.Streams != want.Streams ||
		got.Warmup != want.Warmup || got.Payments != want.Payments || got.ProgressInterval != want.ProgressInterval {
		t.Fatalf("parseLoadGeneratorArgs(Args()) = %+v, %v; want %+v", got, err, want)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no endpoints", []string{"--payments", "1"}, "endpoints"},
		{"no payments", []string{"--endpoints", "a:1", "--payments", "0"}, "payments"},
		{"negative warm-up", []string{"--endpoints", "a:1", "--warmup", "-1"}, "warmup"},
		{"no streams", []string{"--endpoints", "a:1", "--streams", "0"}, "streams"},
		{"no chain id", []string{"--endpoints", "a:1", "--chain-id", "0"}, "chain-id"},
		{"stray argument", []string{"--endpoints", "a:1", "extra"}, "unexpected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			_, err := parseLoadGeneratorArgs(tc.args, &out)
			if err == nil || !strings.Contains(err.Error()+out.String(), tc.want) {
				t.Errorf("parseLoadGeneratorArgs(%v) = %v, want an error about %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestPaymentSource: each stream pays from its own sender with sequential
// nonces, past the payments signed up front too.
func TestPaymentSource(t *testing.T) {
	senders := senderKeys(2)
	ps, err := newPaymentSource(senders, DefaultChainID, 4)
	if err != nil {
		t.Fatal(err)
	}
	for g := range senders {
		signed := len(ps.perStream[g])
		for k := range signed + 2 {
			req, err := ps.next(g)
			if err != nil {
				t.Fatal(err)
			}
			if got := req.GetTx().GetNonce().GetNonceSeq(); got != uint64(k) {
				t.Fatalf("stream %d payment %d has nonce %d", g, k, got)
			}
		}
	}
}

func TestDefaultSectionsInOrder(t *testing.T) {
	if got := DefaultConfig().Sections; !slices.Equal(got, AllSections) {
		t.Errorf("default sections %v", got)
	}
	if len(sectionTitles) != len(AllSections) {
		t.Fatalf("%d titles for %d sections", len(sectionTitles), len(AllSections))
	}
	for i, s := range sectionTitles {
		if s.key != AllSections[i] {
			t.Errorf("title %d is for %q, want %q", i, s.key, AllSections[i])
		}
	}
}
