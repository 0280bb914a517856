package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/allegro-mesh/allegro/deploy/testnet"
	"github.com/allegro-mesh/allegro/sidecar"
)

// topology is what the runner believes about the testnet right now: which
// sidecars run, which mesh networks each is on, the Byzantine modes. It
// decides whether a sidecar is on a side with a quorum.
type topology struct {
	mu      sync.Mutex
	quorum  int
	names   []string
	up      map[string]bool
	meshA   map[string]bool
	meshB   map[string]bool
	byzMode map[string]string
	// tainted validators published invalid signatures: their peers'
	// gossipsub scores of them stay below the graylist threshold for the
	// rest of a run (the penalty halves every 10 minutes), so they count as
	// faulty even once honest again.
	tainted map[string]bool
}

func newTopology(names []string, quorum int) *topology {
	t := &topology{quorum: quorum, names: slices.Clone(names), up: map[string]bool{}, meshA: map[string]bool{},
		meshB: map[string]bool{}, byzMode: map[string]string{}, tainted: map[string]bool{}}
	for _, n := range names {
		t.up[n], t.meshA[n], t.meshB[n] = true, true, true
	}
	return t
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
		if t.byzMode[g] != sidecar.ByzantineInvalidSignatures && !t.tainted[g] {
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
	if t.byzMode[name] != "" || t.tainted[name] {
		return false
	}
	return t.validSigners(t.component(name)) >= t.quorum
}

// AnyQuorum reports whether some side of the mesh holds a quorum.
func (t *topology) AnyQuorum() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, n := range t.names {
		if t.validSigners(t.component(n)) >= t.quorum {
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
}

// honest returns the validators that are never run Byzantine.
func (f *faults) honest() []string {
	var out []string
	for _, s := range f.m.Sidecars {
		if s.Name != f.byz {
			out = append(out, s.Name)
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
	return f.d.waitHealthy(ctx, f.healthTO, cs...)
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
			names := make([]string, 0, n)
			for _, s := range f.m.Sidecars {
				names = append(names, s.Name)
			}
			f.rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
			sideA, sideB := slices.Clone(names[:n/2]), slices.Clone(names[n/2:])
			slices.Sort(sideA)
			slices.Sort(sideB)
			steps = append(steps, step{fault: kind, noQuorum: true, sides: [][]string{sideA, sideB},
				label: fmt.Sprintf("partition:%s|%s", strings.Join(sideA, "+"), strings.Join(sideB, "+")),
				apply: func(ctx context.Context) error {
					for _, v := range sideA {
						if err := f.disconnect(ctx, v, "b"); err != nil {
							return err
						}
					}
					for _, v := range sideB {
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
					for _, v := range sideB {
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
					_, err := f.d.docker(ctx, "kill", "-s", "KILL", f.container(v))
					return err
				},
				heal: func(ctx context.Context) error {
					if _, err := f.d.docker(ctx, "start", f.container(v)); err != nil {
						return err
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
					_, err := f.d.docker(ctx, "pause", f.container(v))
					return err
				},
				heal: func(ctx context.Context) error {
					if _, err := f.d.docker(ctx, "unpause", f.container(v)); err != nil {
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
	if err := f.d.up(ctx, v); err != nil {
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
