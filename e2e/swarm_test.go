package main

import (
	"slices"
	"strings"
	"testing"
)

// TestParseFlagsSwarm: -swarm keeps the faults that map onto swarm
// services, in order, names the others, and refuses what it cannot run.
func TestParseFlagsSwarm(t *testing.T) {
	c, err := parseFlags([]string{"-swarm", "-epoch-length", "0"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Faults, swarmFaults) {
		t.Errorf("faults %v, want %v", c.Faults, swarmFaults)
	}
	want := []string{FaultDisconnectOne, FaultDisconnectMinority, FaultPartition, FaultChainRestart, FaultMembership}
	if !slices.Equal(c.SwarmLeftOut, want) {
		t.Errorf("left out %v, want %v", c.SwarmLeftOut, want)
	}
	for _, f := range c.SwarmLeftOut {
		if swarmLeftOut[f] == "" {
			t.Errorf("no reason for leaving out %s", f)
		}
	}
	if c.Spares() != 0 {
		t.Errorf("spares %d", c.Spares())
	}
	// Without -epoch-length, swarm mode runs without epochs.
	if c, err := parseFlags([]string{"-swarm"}); err != nil || c.EpochLength != 0 {
		t.Errorf("-swarm alone: epoch length %d (%v), want 0", c.EpochLength, err)
	}
	c, err = parseFlags([]string{"-swarm", "-epoch-length", "0", "-faults", "pause,partition,kill"})
	if err != nil || !slices.Equal(c.Faults, []string{FaultPause, FaultKill}) || !slices.Equal(c.SwarmLeftOut, []string{FaultPartition}) {
		t.Errorf("faults %v left out %v (%v)", c.Faults, c.SwarmLeftOut, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-swarm", "-epoch-length", "12"}, "EpochLength"},
		{[]string{"-swarm", "-epoch-length", "0", "-keep"}, "Keep"},
		{[]string{"-swarm", "-epoch-length", "0", "-faults", "partition"}, "at least one"},
	} {
		if _, err := parseFlags(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
	// A Config built in code with a fault swarm cannot apply is refused.
	c = DefaultConfig()
	c.Swarm, c.EpochLength, c.Faults = true, 0, []string{FaultKill, FaultPartition}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), FaultPartition) {
		t.Errorf("validate: %v", err)
	}
}

func TestSwarmService(t *testing.T) {
	d := &docker{project: "allegro-e2e-x", swarm: true}
	for in, want := range map[string]string{
		"allegro-e2e-x-v1":       "allegro-e2e-x_v1",
		"allegro-e2e-x-devchain": "allegro-e2e-x_devchain",
		"allegro-e2e-x-lc2":      "allegro-e2e-x_lc2",
	} {
		if got := d.service(in); got != want {
			t.Errorf("service(%s) = %s, want %s", in, got, want)
		}
	}
	if got := d.logsArgs("allegro-e2e-x-v1", true); !slices.Equal(got, []string{"service", "logs", "--raw", "-t", "allegro-e2e-x_v1"}) {
		t.Errorf("logs args %v", got)
	}
	d.swarm = false
	if got := d.logsArgs("allegro-e2e-x-v1", false); !slices.Equal(got, []string{"logs", "allegro-e2e-x-v1"}) {
		t.Errorf("compose logs args %v", got)
	}
}
