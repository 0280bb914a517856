package main

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/deploy/testnet"
	"github.com/allegro-mesh/allegro/sidecar"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = testnet.ValidatorName(i + 1)
	}
	return out
}

func TestTopologyQuorumSide(t *testing.T) {
	cases := []struct {
		name     string
		n        int
		mutate   func(t *topology)
		quorumOn map[string]bool // sidecars on a quorum side; the others are not
	}{
		{"all connected", 4, func(*topology) {}, map[string]bool{"v1": true, "v2": true, "v3": true, "v4": true}},
		{"one cut off", 4, func(t *topology) { t.meshA["v1"], t.meshB["v1"] = false, false },
			map[string]bool{"v2": true, "v3": true, "v4": true}},
		{"one on mesh-a only still linked", 4, func(t *topology) { t.meshB["v1"] = false },
			map[string]bool{"v1": true, "v2": true, "v3": true, "v4": true}},
		{"halves", 4, func(t *topology) {
			t.meshB["v1"], t.meshB["v2"], t.meshA["v3"], t.meshA["v4"] = false, false, false, false
		}, map[string]bool{}},
		{"killed", 4, func(t *topology) { t.up["v2"] = false }, map[string]bool{"v1": true, "v3": true, "v4": true}},
		{"killed and cut off: f+1 faults", 4, func(t *topology) {
			t.up["v2"] = false
			t.meshA["v1"], t.meshB["v1"] = false, false
		}, map[string]bool{}},
		{"equivocating entry", 4, func(t *topology) { t.byzMode["v4"] = sidecar.ByzantineEquivocate },
			map[string]bool{"v1": true, "v2": true, "v3": true}},
		{"invalid signatures do not count", 4, func(t *topology) {
			t.byzMode["v4"] = sidecar.ByzantineInvalidSignatures
			t.up["v1"] = false
		}, map[string]bool{}},
		{"tainted by invalid signatures, honest again", 4, func(t *topology) {
			t.tainted["v4"] = true
			t.meshA["v1"], t.meshB["v1"] = false, false
		}, map[string]bool{}},
		{"7: tainted and one cut off", 7, func(t *topology) {
			t.tainted["v7"] = true
			t.meshA["v1"], t.meshB["v1"] = false, false
		}, map[string]bool{"v2": true, "v3": true, "v4": true, "v5": true, "v6": true}},
		{"7: two cut off", 7, func(t *topology) {
			for _, v := range []string{"v1", "v2"} {
				t.meshA[v], t.meshB[v] = false, false
			}
		}, map[string]bool{"v3": true, "v4": true, "v5": true, "v6": true, "v7": true}},
		{"7: 3|4 partition", 7, func(t *topology) {
			for _, v := range []string{"v1", "v2", "v3"} {
				t.meshB[v] = false
			}
			for _, v := range []string{"v4", "v5", "v6", "v7"} {
				t.meshA[v] = false
			}
		}, map[string]bool{}},
	}
	for _, tc := range cases {
		f := (tc.n - 1) / 3
		topo := newTopology(names(tc.n), names(tc.n))
		if topo.quorum() != tc.n-f {
			t.Fatalf("%s: quorum %d, want %d", tc.name, topo.quorum(), tc.n-f)
		}
		tc.mutate(topo)
		anyQuorum := false
		for _, n := range names(tc.n) {
			if got := topo.QuorumSide(n); got != tc.quorumOn[n] {
				t.Errorf("%s: QuorumSide(%s) = %v, want %v", tc.name, n, got, tc.quorumOn[n])
			}
			anyQuorum = anyQuorum || tc.quorumOn[n]
		}
		// A Byzantine entry is not on the quorum side, but the others may be.
		if got := topo.AnyQuorum(); got != anyQuorum && !strings.Contains(tc.name, "entry") {
			t.Errorf("%s: AnyQuorum = %v, want %v", tc.name, got, anyQuorum)
		}
	}
}

// fakeManifest is a testnet layout without generating keys.
func fakeManifest(n int) *testnet.Manifest {
	m := &testnet.Manifest{Project: "allegro-e2e-test", Validators: n, F: (n - 1) / 3}
	m.Quorum = n - m.F
	for _, name := range names(n) {
		m.Sidecars = append(m.Sidecars, testnet.Sidecar{Name: name, Container: m.Project + "-" + name})
	}
	return m
}

func TestPlanRound(t *testing.T) {
	for _, n := range []int{4, 7, 10} {
		m := fakeManifest(n)
		byz := testnet.ValidatorName(n)
		f := &faults{m: m, byz: byz, rng: rand.New(rand.NewPCG(1, 2)), topo: newTopology(names(n+1), names(n))}
		steps := f.plan(AllFaults, n, m.F)
		if len(steps) != len(AllFaults) {
			t.Fatalf("n=%d: %d steps, want %d", n, len(steps), len(AllFaults))
		}
		for i, st := range steps {
			if st.fault != AllFaults[i] || st.apply == nil || st.heal == nil {
				t.Fatalf("n=%d: step %d = %+v", n, i, st)
			}
			if st.noQuorum != (st.fault == FaultPartition) {
				t.Errorf("n=%d: %s noQuorum = %v", n, st.fault, st.noQuorum)
			}
			if st.fault != FaultPartition && st.sides != nil {
				t.Errorf("n=%d: %s records sides %v", n, st.fault, st.sides)
			}
			switch st.fault {
			case FaultDisconnectMinority:
				if got := strings.Count(st.label, "+") + 1; got != m.F {
					t.Errorf("n=%d: minority %q has %d nodes, want f=%d", n, st.label, got, m.F)
				}
			case FaultPartition:
				sides := strings.Split(strings.TrimPrefix(st.label, "partition:"), "|")
				if len(sides) != 2 {
					t.Fatalf("n=%d: partition label %q", n, st.label)
				}
				total := 0
				for _, side := range sides {
					k := len(strings.Split(side, "+"))
					total += k
					if k >= m.Quorum {
						t.Errorf("n=%d: partition side %q has a quorum (%d >= %d)", n, side, k, m.Quorum)
					}
				}
				if total != n {
					t.Errorf("n=%d: partition %q covers %d validators (the members, not the spare)", n, st.label, total)
				}
				// The sides the safety check judges the phase by are the
				// label's.
				if len(st.sides) != 2 || strings.Join(st.sides[0], "+") != sides[0] || strings.Join(st.sides[1], "+") != sides[1] {
					t.Errorf("n=%d: partition %q records sides %v", n, st.label, st.sides)
				}
			case FaultKill, FaultPause, FaultDisconnectOne:
				if strings.Contains(st.label, byz) {
					t.Errorf("n=%d: %s picks the Byzantine validator: %q", n, st.fault, st.label)
				}
			case FaultByzantineEquivocate, FaultByzantineInvalidSig:
				if !strings.Contains(st.label, byz+"=") || st.snapApply != byz || st.snapHeal != byz {
					t.Errorf("n=%d: %s step %+v", n, st.fault, st)
				}
			case FaultMembership:
				// The spare joins; an honest member, never the Byzantine
				// one, leaves.
				spare := testnet.ValidatorName(n + 1)
				if !strings.HasPrefix(st.label, "membership:+"+spare+"-v") || strings.HasSuffix(st.label, "-"+byz) {
					t.Errorf("n=%d: membership step %q", n, st.label)
				}
			}
		}
	}
}

// TestVictimsPreferTainted: once the Byzantine validator is tainted, a
// minority disconnect takes it as one of its f victims.
func TestVictimsPreferTainted(t *testing.T) {
	m := fakeManifest(7)
	f := &faults{m: m, byz: "v7", rng: rand.New(rand.NewPCG(1, 2)), topo: newTopology(names(7), names(7))}
	if vs := f.victims(2, true); len(vs) != 2 || vs[0] == "v7" || vs[1] == "v7" {
		t.Fatalf("untainted: %v", vs)
	}
	f.topo.tainted["v7"] = true
	if vs := f.victims(2, true); len(vs) != 2 || vs[0] != "v7" || vs[1] == "v7" {
		t.Fatalf("tainted: %v", vs)
	}
	if vs := f.victims(1, false); len(vs) != 1 || vs[0] == "v7" {
		t.Fatalf("single victim: %v", vs)
	}
}

// TestTopologyMembers: only the current committee's members count towards
// a quorum and can be on a quorum side; a partition puts sidecars outside
// the committee on side B and records there those that were members.
func TestTopologyMembers(t *testing.T) {
	topo := newTopology(names(5), names(4))
	if topo.QuorumSide("v5") || !topo.QuorumSide("v1") || topo.quorum() != 3 {
		t.Fatalf("before joining: v5 on a quorum side %v, v1 %v, quorum %d", topo.QuorumSide("v5"), topo.QuorumSide("v1"), topo.quorum())
	}
	topo.setMember("v5", true)
	if !topo.QuorumSide("v5") || topo.quorum() != 4 {
		t.Fatalf("joined: v5 on a quorum side %v, quorum %d (5 members)", topo.QuorumSide("v5"), topo.quorum())
	}
	topo.up["v2"], topo.up["v3"] = false, false
	if topo.AnyQuorum() {
		t.Fatal("3 of 5 members up make no quorum of 4")
	}
	topo.up["v2"], topo.up["v3"] = true, true
	topo.setMember("v1", false)
	if topo.QuorumSide("v1") || topo.quorum() != 3 {
		t.Fatalf("left: v1 on a quorum side %v, quorum %d", topo.QuorumSide("v1"), topo.quorum())
	}
	f := &faults{m: fakeManifest(4), byz: "v4", rng: rand.New(rand.NewPCG(1, 2)), topo: topo}
	if j := f.joiner(); j != "v1" {
		t.Fatalf("joiner %q, want v1 (outside the committee)", j)
	}
	for _, v := range f.victims(4, false) {
		if v == "v1" || v == "v4" {
			t.Fatalf("victim %s: not an honest member", v)
		}
	}
	steps := f.plan([]string{FaultPartition}, 4, 1)
	if len(steps) != 1 || len(steps[0].sides) != 2 {
		t.Fatalf("partition steps %+v", steps)
	}
	sides := steps[0].sides
	if !slices.Contains(sides[1], "v1") || slices.Contains(sides[0], "v1") || len(sides[0])+len(sides[1]) != 5 {
		t.Fatalf("partition sides %v: want the 4 members split and v1 (a member before) on side B", sides)
	}
	if strings.Contains(steps[0].label, "v1") {
		t.Fatalf("partition label %q names a sidecar outside the committee", steps[0].label)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	cases := []struct {
		field  string
		mutate func(c *Config)
	}{
		{"Validators", func(c *Config) { c.Validators = 3 }},
		{"Payments", func(c *Config) { c.Payments = 0 }},
		{"Rounds", func(c *Config) { c.Rounds = 0 }},
		{"Faults", func(c *Config) { c.Faults = []string{"meteor"} }},
		{"Fault", func(c *Config) { c.Fault = time.Second }},
		{"Heal", func(c *Config) { c.Heal = 0 }},
		{"Lanes", func(c *Config) { c.Lanes = 0 }},
		{"AccountsPerLane", func(c *Config) { c.AccountsPerLane = 1 }},
		{"DoubleSpendAccounts", func(c *Config) { c.DoubleSpendAccounts = -1 }},
		{"ChainEvery", func(c *Config) { c.ChainEvery = -1 }},
		{"FeeTight", func(c *Config) { c.FeeTight = -1 }},
		{"LightClients", func(c *Config) { c.LightClients = 9 }},
		{"EpochLength", func(c *Config) { c.EpochLength = 3 }},
		{"needs EpochLength", func(c *Config) { c.EpochLength = 0 }},
		{"AttemptTimeout", func(c *Config) { c.AttemptTimeout = time.Millisecond }},
		{"Timeout", func(c *Config) { c.Timeout = time.Second }},
		{"Image", func(c *Config) { c.Image = "" }},
		{"Compose", func(c *Config) { c.Compose = "podman" }},
		{"LogLevel", func(c *Config) { c.LogLevel = "chatty" }},
	}
	for _, tc := range cases {
		c := DefaultConfig()
		tc.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v", tc.field, err)
		}
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"-validators", "7", "-rounds", "3", "-faults", "kill, pause", "-payments", "3000"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Validators != 7 || c.Rounds != 3 || len(c.Faults) != 2 || c.Faults[1] != FaultPause || c.Payments != 3000 {
		t.Fatalf("%+v", c)
	}
	// 3000 payments over 8 s + 3 rounds of 2 × 18 s.
	if r := c.Rate(); r < 25 || r > 26 {
		t.Fatalf("rate %.2f", r)
	}
	// The last load account funds the fee-tight accounts.
	if c.FeeTight != 1 || c.LoadAccounts() != c.Lanes*c.AccountsPerLane+c.DoubleSpendAccounts+1 {
		t.Fatalf("fee-tight sets %d, load accounts %d", c.FeeTight, c.LoadAccounts())
	}
	if c, err := parseFlags([]string{"-fee-tight", "0"}); err != nil || c.LoadAccounts() != c.Lanes*c.AccountsPerLane+c.DoubleSpendAccounts {
		t.Fatalf("without fee-tight sets: load accounts %d (%v)", c.LoadAccounts(), err)
	}
	if _, err := parseFlags([]string{"-faults", "disconnect-one,flood"}); err == nil {
		t.Fatal("unknown fault accepted")
	}
}

func TestParseLightClientQCs(t *testing.T) {
	out := strings.Join([]string{
		`{"time":"t","tx_hash":"0x01","qc_proto_hex":"0a0b0c"}`,
		`not json at all`,
		`{"time":"t","tx_hash":"0x02"}`,
		`{"time":"t","tx_hash":"0x03","qc_proto_hex":"zz"}`,
		`{"time":"t","tx_hash":"0x04","qc_proto_hex":"0xff00"}`,
		``,
	}, "\n")
	qcs, bad := parseLightClientQCs(out)
	if len(qcs) != 2 || bad != 2 || qcs[0][0] != 0x0a || len(qcs[1]) != 2 || qcs[1][0] != 0xff {
		t.Fatalf("qcs %x bad %d", qcs, bad)
	}
}
