package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/allegro-mesh/allegro/deploy/testnet"
)

// Swarm mode (-swarm) runs the testnet as a docker swarm stack on a
// one-node swarm the runner creates: docker swarm init, docker stack
// deploy, the same load, faults and checks, then docker stack rm and
// docker swarm leave --force on every way out. It never uses a swarm it
// did not create, and never leaves the engine in one.

// swarmFaults are the perturbations that map onto swarm services.
var swarmFaults = []string{FaultKill, FaultPause, FaultByzantineEquivocate, FaultByzantineInvalidSig}

// swarmLeftOut explains each perturbation swarm mode leaves out.
var swarmLeftOut = map[string]string{
	FaultDisconnectOne:      "a sidecar cut off its peers turns unhealthy and swarm replaces its task",
	FaultDisconnectMinority: "a sidecar cut off its peers turns unhealthy and swarm replaces its task",
	FaultPartition:          "half the committee turns unhealthy and swarm replaces their tasks",
	FaultChainRestart:       "a stopped task is not started again by hand; scaling the service is not the same fault",
	FaultMembership:         "committees from the chain are not in the stack yet (needs -epoch-length)",
}

// splitSwarmFaults keeps the faults swarm mode applies, in order, and
// returns the others.
func splitSwarmFaults(faults []string) (kept, left []string) {
	for _, f := range faults {
		if slices.Contains(swarmFaults, f) {
			kept = append(kept, f)
		} else if !slices.Contains(left, f) {
			left = append(left, f)
		}
	}
	return kept, left
}

// gwBridge is the bridge docker creates for swarm tasks' outside traffic;
// it outlives docker swarm leave.
const gwBridge = "docker_gwbridge"

// swarmNode is the one-node swarm of a run.
type swarmNode struct {
	log *slog.Logger
	// gwBridgeBefore: docker_gwbridge existed before init (not ours to
	// remove).
	gwBridgeBefore bool
	joined         bool
}

// swarmState returns the engine's swarm state ("inactive", "active", ...).
func swarmState(ctx context.Context) (string, error) {
	out, err := run(ctx, 30*time.Second, nil, "docker", "info", "--format", "{{.Swarm.LocalNodeState}}")
	return strings.TrimSpace(out), err
}

// initSwarm makes the engine a one-node swarm. It refuses an engine that
// is already in a swarm: the runner only removes what it created.
func initSwarm(ctx context.Context, log *slog.Logger) (*swarmNode, error) {
	st, err := swarmState(ctx)
	if err != nil {
		return nil, fmt.Errorf("swarm: %w", err)
	}
	if st != "inactive" {
		return nil, fmt.Errorf("swarm: the engine's swarm state is %q, want inactive: the runner creates its own swarm and leaves it", st)
	}
	n := &swarmNode{log: log}
	if _, err := run(ctx, 30*time.Second, nil, "docker", "network", "inspect", gwBridge); err == nil {
		n.gwBridgeBefore = true
	}
	// Loopback: the swarm has one node, which needs no address others
	// reach.
	if _, err := run(ctx, 2*time.Minute, nil, "docker", "swarm", "init", "--advertise-addr", "127.0.0.1"); err != nil {
		// A half-made swarm is left too.
		n.joined = true
		n.leave()
		return nil, fmt.Errorf("swarm: init: %w", err)
	}
	n.joined = true
	return n, nil
}

// leave takes the engine out of the swarm and removes docker_gwbridge if
// the swarm brought it. It runs on a fresh context (after Ctrl-C too).
func (n *swarmNode) leave() error {
	if n == nil || !n.joined {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	if _, err := run(ctx, time.Minute, nil, "docker", "swarm", "leave", "--force"); err != nil {
		errs = append(errs, err)
	}
	if st, err := swarmState(ctx); err != nil || st != "inactive" {
		errs = append(errs, fmt.Errorf("swarm: state after leave %q (%v)", st, err))
	} else {
		n.joined = false
	}
	if !n.gwBridgeBefore {
		// Its endpoints go with the swarm's containers; retry briefly.
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := run(ctx, 30*time.Second, nil, "docker", "network", "inspect", gwBridge); err != nil {
				break
			}
			_, err := run(ctx, 30*time.Second, nil, "docker", "network", "rm", gwBridge)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("swarm: remove %s: %w", gwBridge, err))
				break
			}
			if sleepCtx(ctx, time.Second) != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// service is the swarm service of a testnet container name
// (<project>-<name> becomes <project>_<name>).
func (d *docker) service(container string) string {
	return testnet.SwarmService(d.project, strings.TrimPrefix(container, d.project+"-"))
}

// resolve returns the container to run a docker command on: the name
// itself with compose, the newest running (or paused) container of the
// service in swarm mode.
func (d *docker) resolve(ctx context.Context, container string) (string, error) {
	if !d.swarm {
		return container, nil
	}
	out, err := d.docker(ctx, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+d.service(container))
	if err != nil {
		return "", err
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return "", fmt.Errorf("%w: service %s", errNoTask, d.service(container))
	}
	return ids[0], nil
}

// errNoTask: a swarm service has no running container.
var errNoTask = errors.New("no running task")

// onContainer runs docker args... CONTAINER on a (resolved) container.
func (d *docker) onContainer(ctx context.Context, container string, args ...string) (string, error) {
	c, err := d.resolve(ctx, container)
	if err != nil {
		return "", err
	}
	return d.docker(ctx, append(args, c)...)
}

// stackDeploy deploys the stack with the runner's environment (the
// Byzantine switch's default substitution).
func (d *docker) stackDeploy(ctx context.Context) error {
	env := make([]string, 0, len(d.env))
	for k, v := range d.env {
		env = append(env, k+"="+v)
	}
	// The image is local (one node): no registry lookup.
	_, err := run(ctx, 5*time.Minute, env, "docker", "stack", "deploy", "--resolve-image", "never",
		"-c", filepath.Join(d.dir, testnet.StackFile), d.project)
	return err
}

// serviceEnv sets an environment variable of a validator's service; swarm
// replaces its task (stop first), which keeps its volume.
func (d *docker) serviceEnv(ctx context.Context, name, kv string) error {
	_, err := run(ctx, 4*time.Minute, nil, "docker", "service", "update", "--quiet", "--env-add", kv,
		testnet.SwarmService(d.project, name))
	return err
}

// stackRemove removes the stack, then waits for its containers to go and
// removes its networks (if still there) and volumes.
func (d *docker) stackRemove(ctx context.Context) error {
	var errs []error
	if _, err := d.docker(ctx, "stack", "rm", d.project); err != nil {
		errs = append(errs, err)
	}
	label := "label=com.docker.stack.namespace=" + d.project
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := d.docker(ctx, "ps", "-aq", "--filter", label)
		if err == nil && strings.TrimSpace(out) == "" {
			break
		}
		if time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("stack %s: containers still there after 2m", d.project))
			break
		}
		if sleepCtx(ctx, time.Second) != nil {
			break
		}
	}
	for _, kind := range []string{"network", "volume"} {
		for attempt := 0; attempt < 20; attempt++ {
			out, err := d.docker(ctx, kind, "ls", "-q", "--filter", "name="+d.project+"-")
			names := strings.Fields(out)
			if err != nil || len(names) == 0 {
				break
			}
			if _, err := d.docker(ctx, append([]string{kind, "rm"}, names...)...); err == nil {
				break
			} else if attempt == 19 {
				errs = append(errs, err)
			}
			if sleepCtx(ctx, time.Second) != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// waitReady polls a sidecar's /readyz at api (host:port) until it answers
// 200.
func waitReady(ctx context.Context, api string, timeout time.Duration) error {
	hc := &http.Client{Timeout: 3 * time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+api+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("readyz: HTTP %d", resp.StatusCode)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, last)
		}
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}
