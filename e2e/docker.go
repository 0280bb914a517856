package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// docker runs the docker CLI and the compose command, each call bounded in
// time.
type docker struct {
	compose []string // "docker compose" or "docker-compose"
	project string
	dir     string // the generated testnet (compose file and relative mounts)
	log     *slog.Logger
	// env is added to compose's environment (ALLEGRO_BYZANTINE_<NAME>).
	env map[string]string
	// swarm: the testnet is the swarm stack project (swarm.go); the
	// container names of the manifest name its services.
	swarm bool
}

// defaultCommandTimeout bounds one docker command.
const defaultCommandTimeout = 2 * time.Minute

// run executes name args with a timeout and returns stdout; the error
// carries stderr.
func run(ctx context.Context, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(lastLines(errOut.String(), 8)))
	}
	return out.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// dockerAvailable reports whether a Docker engine answers.
func dockerAvailable(ctx context.Context) error {
	_, err := run(ctx, 20*time.Second, nil, "docker", "info", "--format", "{{.ServerVersion}}")
	return err
}

// detectCompose returns the compose command: the `docker compose` plugin
// when present, else the python docker-compose.
func detectCompose(ctx context.Context, forced string) ([]string, error) {
	if forced != "" {
		return strings.Fields(forced), nil
	}
	if _, err := run(ctx, 20*time.Second, nil, "docker", "compose", "version"); err == nil {
		return []string{"docker", "compose"}, nil
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		if _, err := run(ctx, 20*time.Second, nil, "docker-compose", "version"); err == nil {
			return []string{"docker-compose"}, nil
		}
	}
	return nil, errors.New("neither `docker compose` nor `docker-compose` works")
}

func (d *docker) docker(ctx context.Context, args ...string) (string, error) {
	d.log.Debug("docker", "args", strings.Join(args, " "))
	return run(ctx, defaultCommandTimeout, nil, "docker", args...)
}

// composeRun runs a compose subcommand for the testnet's project.
func (d *docker) composeRun(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	full := append(append(append([]string(nil), d.compose[1:]...),
		"-p", d.project, "-f", filepath.Join(d.dir, "docker-compose.yml")), args...)
	env := make([]string, 0, len(d.env))
	for k, v := range d.env {
		env = append(env, k+"="+v)
	}
	d.log.Debug("compose", "args", strings.Join(args, " "), "env", env)
	return run(ctx, timeout, env, d.compose[0], full...)
}

// up creates and starts every service (or the given ones, without their
// dependencies).
func (d *docker) up(ctx context.Context, services ...string) error {
	if d.swarm {
		if len(services) > 0 {
			return errors.New("swarm: services are updated, not brought up one by one")
		}
		return d.stackDeploy(ctx)
	}
	args := []string{"up", "-d"}
	if len(services) > 0 {
		args = append(append(args, "--no-deps"), services...)
	}
	_, err := d.composeRun(ctx, 5*time.Minute, args...)
	return err
}

// down removes the project's containers, networks and volumes.
func (d *docker) down(ctx context.Context) error {
	if d.swarm {
		return d.stackRemove(ctx)
	}
	_, err := d.composeRun(ctx, 3*time.Minute, "down", "-v", "--remove-orphans", "-t", "5")
	return err
}

// health returns a container's health status ("healthy", "starting",
// "unhealthy", "" without a health check) and whether it runs.
func (d *docker) health(ctx context.Context, container string) (status string, running bool, err error) {
	id, err := d.resolve(ctx, container)
	if errors.Is(err, errNoTask) {
		return "", false, nil // swarm has not (re)started it yet
	}
	if err != nil {
		return "", false, err
	}
	out, err := d.docker(ctx, "inspect", "-f", "{{.State.Running}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", id)
	if err != nil {
		return "", false, err
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		return "", false, fmt.Errorf("inspect %s: empty answer", container)
	}
	running = f[0] == "true"
	if len(f) > 1 {
		status = f[1]
	}
	return status, running, nil
}

// waitHealthy polls until every container is running and healthy (or
// running, without a health check).
func (d *docker) waitHealthy(ctx context.Context, timeout time.Duration, containers ...string) error {
	deadline := time.Now().Add(timeout)
	pending := append([]string(nil), containers...)
	for {
		var still []string
		var last error
		for _, c := range pending {
			st, running, err := d.health(ctx, c)
			switch {
			case err != nil:
				last = err
				still = append(still, c)
			case !running || (st != "" && st != "healthy"):
				last = fmt.Errorf("%s: running=%v health=%q", c, running, st)
				still = append(still, c)
			}
		}
		if len(still) == 0 {
			return nil
		}
		pending = still
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy after %s: %v (last: %v)", timeout, pending, last)
		}
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

// logsArgs is the docker command for a container's logs: in swarm mode
// those of every task of its service (a killed task's included).
func (d *docker) logsArgs(container string, timestamps bool) []string {
	args := []string{"logs"}
	if d.swarm {
		args = []string{"service", "logs", "--raw"}
	}
	if timestamps {
		args = append(args, "-t")
	}
	if d.swarm {
		return append(args, d.service(container))
	}
	return append(args, container)
}

// logs returns a container's stdout and stderr separately.
func (d *docker) logs(ctx context.Context, container string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", d.logsArgs(container, true)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// stdout returns a container's stdout without timestamps.
func (d *docker) stdout(ctx context.Context, container string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", d.logsArgs(container, false)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	return out.String(), err
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// usedSubnets lists the subnets of every docker network.
func usedSubnets(ctx context.Context) ([]string, error) {
	ids, err := run(ctx, 30*time.Second, nil, "docker", "network", "ls", "-q")
	if err != nil {
		return nil, err
	}
	fields := strings.Fields(ids)
	if len(fields) == 0 {
		return nil, nil
	}
	out, err := run(ctx, 30*time.Second, nil, "docker", append([]string{"network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"}, fields...)...)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}
