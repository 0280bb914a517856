package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/allegro-mesh/allegro/deploy/testnet"
	"github.com/allegro-mesh/allegro/qc"
	"github.com/allegro-mesh/allegro/sidecar"
	"github.com/allegro-mesh/allegro/tempo"
	"github.com/allegro-mesh/allegro/tempo/devkit"
)

// topology is what the runner believes about the testnet right now: which
// sidecars run, which mesh networks each is on, the Byzantine modes. It
// decides whether a sidecar is on a side with a quorum.
type topology struct {
	mu    sync.Mutex
	names []string
	// members are the sidecars in the current epoch's committee (all of
	// them on a network without epochs); a quorum is counted among them.
	members map[string]bool
	// everMember are the sidecars that were members at some time.
	everMember map[string]bool
	up         map[string]bool
	meshA      map[string]bool
	meshB      map[string]bool
	byzMode    map[string]string
	// tainted validators published invalid signatures: their peers'
	// gossipsub scores of them stay below the graylist threshold for the
	// rest of a run (the penalty halves every 10 minutes), so they count as
	// faulty even once honest again.
	tainted map[string]bool
}

func newTopology(names, members []string) *topology {
	t := &topology{names: slices.Clone(names), members: map[string]bool{}, everMember: map[string]bool{}, up: map[string]bool{}, meshA: map[string]bool{},
		meshB: map[string]bool{}, byzMode: map[string]string{}, tainted: map[string]bool{}}
	for _, n := range names {
		t.up[n], t.meshA[n], t.meshB[n] = true, true, true
	}
	for _, n := range members {
		t.members[n], t.everMember[n] = true, true
	}
	return t
}

// quorum is the committee's quorum: n − ⌊(n−1)/3⌋ of its members.
func (t *topology) quorum() int {
	n := 0
	for _, in := range t.members {
		if in {
			n++
		}
	}
	return n - (n-1)/3
}

// outside returns the sidecars outside the current committee and, of
// them, those that were members before.
func (t *topology) outside() (all, wereMembers []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, n := range t.names {
		if !t.members[n] {
			all = append(all, n)
			if t.everMember[n] {
				wereMembers = append(wereMembers, n)
			}
		}
	}
	return all, wereMembers
}

// setMember records that name joined or left the committee.
func (t *topology) setMember(name string, in bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.members[name] = in
	if in {
		t.everMember[name] = true
	}
}

// memberList returns the current members, in name order.
func (t *topology) memberList() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, n := range t.names {
		if t.members[n] {
			out = append(out, n)
		}
	}
	return out
}

// linked reports whether a and b can exchange mesh messages.
func (t *topology) linked(a, b string) bool {
	return t.up[a] && t.up[b] && ((t.meshA[a] && t.meshA[b]) || (t.meshB[a] && t.meshB[b]))
}

// component returns the sidecars reachable from name over the mesh.
func (t *topology) component(name string) []string {
	if !t.up[name] {
		return nil
	}
	seen := map[string]bool{name: true}
	queue := []string{name}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, o := range t.names {
			if !seen[o] && t.linked(cur, o) {
				seen[o] = true
				queue = append(queue, o)
			}
		}
	}
	out := make([]string, 0, len(seen))
	for _, n := range t.names {
		if seen[n] {
			out = append(out, n)
		}
	}
	return out
}

// validSigners counts the members of group whose certificates verify (a
// validator publishing invalid signatures contributes none).
func (t *topology) validSigners(group []string) int {
	n := 0
	for _, g := range group {
		if t.members[g] && t.byzMode[g] != sidecar.ByzantineInvalidSignatures && !t.tainted[g] {
			n++
		}
	}
	return n
}

// QuorumSide reports whether a payment accepted by name now can gather a
// quorum: name runs honestly and its side of the mesh holds a quorum of
// valid signers.
func (t *topology) QuorumSide(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.members[name] || t.byzMode[name] != "" || t.tainted[name] {
		return false
	}
	return t.validSigners(t.component(name)) >= t.quorum()
}

// AnyQuorum reports whether some side of the mesh holds a quorum.
func (t *topology) AnyQuorum() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, n := range t.names {
		if t.validSigners(t.component(n)) >= t.quorum() {
			return true
		}
	}
	return false
}

func (t *topology) set(f func(t *topology)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(t)
}

// step is one perturbation: apply starts the fault phase, heal starts the
// healed phase.
type step struct {
	fault    string
	label    string // phase name, e.g. "kill:v2"
	noQuorum bool   // no side holds a quorum during the fault
	// sides are the validators that can still reach each other during a
	// partition, one group per side: safety.Check explains a QC formed
	// during a no-quorum phase only by certificates from one side.
	sides [][]string
	// snapApply and snapHeal name a sidecar whose board is collected just
	// before apply or heal: a restart or recreation loses what it held.
	snapApply, snapHeal string
	apply               func(ctx context.Context) error
	heal                func(ctx context.Context) error
}

// faults builds perturbation steps against a running testnet.
type faults struct {
	d        *docker
	m        *testnet.Manifest
	topo     *topology
	byz      string // the Byzantine-capable validator
	healthTO time.Duration
	rng      *rand.Rand
	victimAt int
	// ep follows the epochs (nil on a network without them); epochWait
	// bounds a wait for a committee change.
	ep        *epochWatch
	epochWait time.Duration
}

// honest returns the current members that are never run Byzantine.
func (f *faults) honest() []string {
	var out []string
	for _, n := range f.topo.memberList() {
		if n != f.byz {
			out = append(out, n)
		}
	}
	return out
}

// victims picks k honest validators, rotating through them across calls.
// With tainted, a validator that is already faulty (tainted by invalid
// signatures) is picked first, so the faulty stay at most k.
func (f *faults) victims(k int, tainted bool) []string {
	h := f.honest()
	out := make([]string, 0, k)
	if tainted && k > 0 && f.isTainted(f.byz) {
		out = append(out, f.byz)
		k--
	}
	for i := 0; i < k && i < len(h); i++ {
		out = append(out, h[(f.victimAt+i)%len(h)])
	}
	f.victimAt += k
	return out
}

func (f *faults) isTainted(name string) bool {
	f.topo.mu.Lock()
	defer f.topo.mu.Unlock()
	return f.topo.tainted[name]
}

func (f *faults) container(name string) string {
	s, _ := f.m.Sidecar(name)
	return s.Container
}

// disconnect removes name from the given mesh networks ("a", "b").
func (f *faults) disconnect(ctx context.Context, name string, nets ...string) error {
	f.topo.set(func(t *topology) {
		for _, n := range nets {
			if n == "a" {
				t.meshA[name] = false
			} else {
				t.meshB[name] = false
			}
		}
	})
	for _, n := range nets {
		network := f.m.Networks.MeshA
		if n == "b" {
			network = f.m.Networks.MeshB
		}
		if _, err := f.d.docker(ctx, "network", "disconnect", network, f.container(name)); err != nil {
			return err
		}
	}
	return nil
}

// connect puts name back on the given mesh networks at its own addresses.
func (f *faults) connect(ctx context.Context, name string, nets ...string) error {
	s, _ := f.m.Sidecar(name)
	for _, n := range nets {
		network, ip := f.m.Networks.MeshA, s.MeshAIP
		if n == "b" {
			network, ip = f.m.Networks.MeshB, s.MeshBIP
		}
		if _, err := f.d.docker(ctx, "network", "connect", "--ip", ip, network, s.Container); err != nil {
			return err
		}
	}
	f.topo.set(func(t *topology) {
		for _, n := range nets {
			if n == "a" {
				t.meshA[name] = true
			} else {
				t.meshB[name] = true
			}
		}
	})
	return nil
}

func (f *faults) waitHealthy(ctx context.Context, names ...string) error {
	var cs []string
	for _, n := range names {
		if n == f.m.Chain.Service {
			cs = append(cs, f.m.Chain.Container)
		} else {
			cs = append(cs, f.container(n))
		}
	}
	if err := f.d.waitHealthy(ctx, f.healthTO, cs...); err != nil || !f.d.swarm {
		return err
	}
	// A swarm task's health is liveness (see deploy/testnet/stack.go):
	// wait for readiness through the API.
	for _, n := range names {
		if s, ok := f.m.Sidecar(n); ok {
			if err := waitReady(ctx, s.API, f.healthTO); err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
		}
	}
	return nil
}

// plan returns the steps of one round.
func (f *faults) plan(kinds []string, n, fmax int) []step {
	var steps []step
	for _, kind := range kinds {
		switch kind {
		case FaultDisconnectOne, FaultDisconnectMinority:
			k := 1
			if kind == FaultDisconnectMinority {
				k = fmax
			}
			vs := f.victims(k, kind == FaultDisconnectMinority)
			steps = append(steps, step{fault: kind, label: kind + ":" + strings.Join(vs, "+"),
				apply: func(ctx context.Context) error {
					for _, v := range vs {
						if err := f.disconnect(ctx, v, "a", "b"); err != nil {
							return err
						}
					}
					return nil
				},
				heal: func(ctx context.Context) error {
					for _, v := range vs {
						if err := f.connect(ctx, v, "a", "b"); err != nil {
							return err
						}
					}
					return nil
				}})
		case FaultPartition:
			names := f.topo.memberList()
			f.rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
			half := len(names) / 2
			sideA, sideB := slices.Clone(names[:half]), slices.Clone(names[half:])
			slices.Sort(sideA)
			slices.Sort(sideB)
			// Sidecars outside the committee join side B: one that left
			// still runs its old epoch's node and would bridge the halves.
			// Those that were members once are recorded on that side.
			outside, wereMembers := f.topo.outside()
			moveB := append(slices.Clone(sideB), outside...)
			recordedB := append(slices.Clone(sideB), wereMembers...)
			slices.Sort(recordedB)
			steps = append(steps, step{fault: kind, noQuorum: true, sides: [][]string{sideA, recordedB},
				label: fmt.Sprintf("partition:%s|%s", strings.Join(sideA, "+"), strings.Join(sideB, "+")),
				apply: func(ctx context.Context) error {
					for _, v := range sideA {
						if err := f.disconnect(ctx, v, "b"); err != nil {
							return err
						}
					}
					for _, v := range moveB {
						if err := f.disconnect(ctx, v, "a"); err != nil {
							return err
						}
					}
					return nil
				},
				heal: func(ctx context.Context) error {
					for _, v := range sideA {
						if err := f.connect(ctx, v, "b"); err != nil {
							return err
						}
					}
					for _, v := range moveB {
						if err := f.connect(ctx, v, "a"); err != nil {
							return err
						}
					}
					return nil
				}})
		case FaultKill:
			v := f.victims(1, false)[0]
			steps = append(steps, step{fault: kind, label: "kill:" + v, snapApply: v,
				apply: func(ctx context.Context) error {
					f.topo.set(func(t *topology) { t.up[v] = false })
					_, err := f.d.onContainer(ctx, f.container(v), "kill", "-s", "KILL")
					return err
				},
				heal: func(ctx context.Context) error {
					// Swarm restarts a killed task itself (restart
					// policy on-failure), keeping its volume.
					if !f.d.swarm {
						if _, err := f.d.docker(ctx, "start", f.container(v)); err != nil {
							return err
						}
					}
					if err := f.waitHealthy(ctx, v); err != nil {
						return err
					}
					f.topo.set(func(t *topology) { t.up[v] = true })
					return nil
				}})
		case FaultPause:
			v := f.victims(1, false)[0]
			steps = append(steps, step{fault: kind, label: "pause:" + v,
				apply: func(ctx context.Context) error {
					f.topo.set(func(t *topology) { t.up[v] = false })
					_, err := f.d.onContainer(ctx, f.container(v), "pause")
					return err
				},
				heal: func(ctx context.Context) error {
					if _, err := f.d.onContainer(ctx, f.container(v), "unpause"); err != nil {
						return err
					}
					f.topo.set(func(t *topology) { t.up[v] = true })
					return nil
				}})
		case FaultChainRestart:
			// A graceful stop: the dev chain flushes its state to its
			// volume (a SIGKILL would roll an in-memory dev chain back,
			// which no real chain does).
			steps = append(steps, step{fault: kind, label: "chain-restart",
				apply: func(ctx context.Context) error {
					_, err := f.d.docker(ctx, "stop", "-t", "20", f.m.Chain.Container)
					return err
				},
				heal: func(ctx context.Context) error {
					if _, err := f.d.docker(ctx, "start", f.m.Chain.Container); err != nil {
						return err
					}
					return f.waitHealthy(ctx, f.m.Chain.Service)
				}})
		case FaultMembership:
			out := f.victims(1, false)[0]
			in := f.joiner()
			steps = append(steps, step{fault: kind, label: fmt.Sprintf("membership:+%s-%s", in, out),
				apply: func(ctx context.Context) error { return f.join(ctx, in, out) },
				heal:  func(ctx context.Context) error { return f.leave(ctx, out) }})
		case FaultByzantineEquivocate, FaultByzantineInvalidSig:
			mode := sidecar.ByzantineEquivocate
			if kind == FaultByzantineInvalidSig {
				mode = sidecar.ByzantineInvalidSignatures
			}
			v := f.byz
			steps = append(steps, step{fault: kind, label: "byzantine:" + v + "=" + mode, snapApply: v, snapHeal: v,
				apply: func(ctx context.Context) error { return f.setByzantine(ctx, v, mode) },
				heal:  func(ctx context.Context) error { return f.setByzantine(ctx, v, "") }})
		}
	}
	return steps
}

// setByzantine recreates validator v (state kept on its volume) with the
// Byzantine mode ("" for honest) and waits until it is healthy.
func (f *faults) setByzantine(ctx context.Context, v, mode string) error {
	f.topo.set(func(t *topology) {
		t.up[v] = false
		if mode != "" {
			t.byzMode[v] = mode
		}
	})
	f.d.env[testnet.ByzantineEnv(v)] = mode
	if f.d.swarm {
		// The stack substituted the variable at deploy time: set the
		// service's own variable instead.
		if err := f.d.serviceEnv(ctx, v, "ALLEGRO_BYZANTINE="+mode); err != nil {
			return err
		}
	} else if err := f.d.up(ctx, v); err != nil {
		return err
	}
	if err := f.waitHealthy(ctx, v); err != nil {
		return err
	}
	f.topo.set(func(t *topology) {
		t.up[v] = true
		t.byzMode[v] = mode
		if mode == sidecar.ByzantineInvalidSignatures {
			t.tainted[v] = true
		}
	})
	return nil
}

// joiner picks the sidecar to add to the committee: the first outside it
// (a spare, or a validator removed before).
func (f *faults) joiner() string {
	outside, _ := f.topo.outside()
	if len(outside) == 0 {
		return ""
	}
	return outside[0]
}

// sidecarID returns the sidecar key of testnet validator name.
func (f *faults) sidecarID(name string) (qc.ValidatorID, error) {
	s, ok := f.m.Sidecar(name)
	if !ok {
		return qc.ValidatorID{}, fmt.Errorf("no validator %q in the testnet", name)
	}
	return s.ID()
}

// setActive makes the ValidatorConfig's owner add name's consensus key to
// the chain's validator set, or change its status when it is listed.
func (f *faults) setActive(ctx context.Context, name string, active bool) error {
	s, ok := f.m.Sidecar(name)
	if !ok || s.ConsensusKey == "" {
		return fmt.Errorf("validator %q has no consensus key (a testnet without epochs?)", name)
	}
	raw, err := hex.DecodeString(s.ConsensusKey)
	if err != nil || len(raw) != 32 {
		return fmt.Errorf("validator %s: consensus key %q", name, s.ConsensusKey)
	}
	pub := [32]byte(raw)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ec, err := ethclient.DialContext(ctx, f.m.Chain.RPC)
	if err != nil {
		return fmt.Errorf("dial the dev chain: %w", err)
	}
	defer ec.Close()
	set, err := devkit.ReadValidators(ctx, ec)
	if err != nil {
		return err
	}
	listed := slices.ContainsFunc(set, func(v tempo.Validator) bool { return v.PublicKey == pub })
	var data []byte
	switch {
	case listed:
		data = tempo.ChangeValidatorStatusCalldata(devkit.ValidatorAddress(pub), active)
	case active:
		if data, err = tempo.AddValidatorCalldata(tempo.Validator{PublicKey: pub, Active: true,
			ValidatorAddress: devkit.ValidatorAddress(pub), InboundAddress: s.MeshAIP}); err != nil {
			return err
		}
	default:
		return fmt.Errorf("validator %s is not on chain", name)
	}
	if err := devkit.OwnerCall(ctx, ec, data); err != nil {
		return fmt.Errorf("validator %s active=%v: %w", name, active, err)
	}
	return nil
}

// join adds in on chain, waits for the epoch whose committee holds it and
// for its sidecar to serve, then deactivates out (which leaves at a later
// boundary: leave waits for that).
func (f *faults) join(ctx context.Context, in, out string) error {
	if f.ep == nil {
		return errors.New("the committee changes through the chain only on a network with epochs")
	}
	if in == "" {
		return errors.New("no sidecar outside the committee to add")
	}
	inID, err := f.sidecarID(in)
	if err != nil {
		return err
	}
	if err := f.setActive(ctx, in, true); err != nil {
		return err
	}
	e, err := f.ep.waitFor(ctx, f.epochWait, in+" in the committee", func(_ uint64, c *qc.Committee) bool {
		_, ok := c.Member(inID)
		return ok
	})
	if err != nil {
		return err
	}
	if err := f.waitHealthy(ctx, in); err != nil {
		return err
	}
	f.topo.setMember(in, true)
	f.ep.log.Info("membership: joined", "validator", in, "epoch", e)
	return f.setActive(ctx, out, false)
}

// leave waits for the epoch whose committee no longer holds out.
func (f *faults) leave(ctx context.Context, out string) error {
	outID, err := f.sidecarID(out)
	if err != nil {
		return err
	}
	e, err := f.ep.waitFor(ctx, f.epochWait, out+" out of the committee", func(_ uint64, c *qc.Committee) bool {
		_, ok := c.Member(outID)
		return !ok
	})
	if err != nil {
		return err
	}
	f.topo.setMember(out, false)
	f.ep.log.Info("membership: left", "validator", out, "epoch", e)
	return nil
}
