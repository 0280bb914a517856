package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/bench"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/p2p"
)

func TestBenchFlags(t *testing.T) {
	cfg, out, profile, err := benchConfig([]string{
		"--sections", "latency,resources", "--validators", "4, 7", "--link-latency", "0",
		"--payments", "100", "--resource-payments", "100000", "--out", "res", "--cpuprofile", "cpu.out", "--quiet",
		"--transport", "quic",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Sections, []string{"latency", "resources"}) || !slices.Equal(cfg.Validators, []int{4, 7}) ||
		cfg.LinkLatency != 0 || cfg.Payments != 100 || cfg.ResourcePayments != 100_000 || out != "res" || profile != "cpu.out" ||
		cfg.Progress != nil || cfg.StartSidecar == nil || cfg.Transport != p2p.TransportQUIC {
		t.Errorf("config %+v, out %q, profile %q", cfg, out, profile)
	}
	if cmd := cfg.StartSidecar([]string{"--index", "1"}); len(cmd.Args) < 2 || cmd.Args[1] != "bench-sidecar" {
		t.Errorf("sidecar command %v", cmd.Args)
	}
	def, _, _, err := benchConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(def.Sections, bench.AllSections) || def.LinkLatency != 10*time.Millisecond || def.Progress == nil ||
		def.Transport != p2p.DefaultPreferredTransport {
		t.Errorf("defaults %+v", def)
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown section", []string{"--sections", "latency,nope"}, `"nope"`},
		{"bad committee size", []string{"--validators", "4,x"}, "--validators"},
		{"zero committee size", []string{"--validators", "0"}, "--validators"},
		{"too large", []string{"--validators", "400"}, "Validators"},
		{"no payments", []string{"--payments", "0"}, "Payments"},
		{"bad log level", []string{"--log-level", "loud"}, "log level"},
		{"bad transport", []string{"--transport", "udp"}, "preferred_transport"},
		{"stray argument", []string{"extra"}, "unexpected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := benchConfig(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("benchConfig(%v) = %v, want an error about %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestBenchCommand runs `allegro-dev bench` on the built binary at tiny sizes,
// sidecar processes (`allegro-dev bench-sidecar`) included, and checks the
// table and the output files.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := testkit.Binary(t, "github.com/allegro-mesh/allegro/cmd/allegro-dev")
	outDir := filepath.Join(t.TempDir(), "results")
	cmd := exec.Command(bin, "bench", "--sections", "cost,resources", "--cost-time", "5ms", "--resource-payments", "8",
		"--streams", "4", "--out", outDir, "--quiet", "--dir", t.TempDir())
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("allegro-dev bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		}
	case <-time.After(5 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("allegro-dev bench did not finish in 5 minutes\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	for _, want := range []string{"== Per-payment work", "== Resources", "peak RSS per sidecar (max)", "== Targets", "results.csv"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	csv, err := os.ReadFile(filepath.Join(outDir, "results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(csv), "resources,\"n=4 processes, 8 payments\",peak RSS per sidecar (max)") {
		t.Errorf("results.csv:\n%s", csv)
	}
}

func TestMain(m *testing.M) { os.Exit(testkit.MainWithCleanup(m)) }

func TestScaleArgs(t *testing.T) {
	got, err := scaleArgs([]string{"--validators", "100, 300", "--payments", "5", "--cases", "wan,crashed", "--degree", "4", "--remote", "1", "--cut", "1s", "--out", "/tmp/x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := "test ./sim -run ^TestScaleReport$ -count 1 -timeout 0 -v -args -sim.validators 100,300 -sim.payments 5 -sim.cases wan,crashed -sim.degree 4 -sim.remote 1 -sim.cut 1s -sim.out /tmp/x"
	if strings.Join(got, " ") != want {
		t.Errorf("go %s\nwant go %s", strings.Join(got, " "), want)
	}
	bad := []struct {
		name string
		args []string
		want string
	}{
		{"small committee", []string{"--validators", "3"}, "--validators"},
		{"not a number", []string{"--validators", "ten"}, "--validators"},
		{"no payments", []string{"--payments", "0"}, "--payments"},
		{"no cut", []string{"--cut", "0s"}, "--cut"},
		{"unknown case", []string{"--cases", "wan,moon"}, `"moon"`},
		{"degree 2", []string{"--degree", "2"}, "--degree"},
		{"remote without degree", []string{"--remote", "1"}, "--remote"},
		{"argument", []string{"extra"}, "extra"},
	}
	for _, tc := range bad {
		if _, err := scaleArgs(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}

func TestChildExecutable(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "allegro-dev")
	beside := filepath.Join(dir, benchChildName)
	other := filepath.Join(t.TempDir(), "child")
	plain := filepath.Join(dir, "notes.txt")
	for _, f := range []string{self, beside, other} {
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	same := func(string, string) bool { return true }
	differ := func(string, string) bool { return false }

	tests := []struct {
		name      string
		given     string
		sameBuild func(a, b string) bool
		removed   bool // beside is absent
		want      string
		wantErr   string
	}{
		{name: "given", given: other, sameBuild: same, want: other},
		{name: "given wins over one beside", given: self, sameBuild: same, want: self},
		{name: "given missing", given: filepath.Join(dir, "nope"), sameBuild: same, wantErr: "no such file"},
		{name: "given not executable", given: plain, sameBuild: same, wantErr: "not an executable"},
		{name: "given a folder", given: dir, sameBuild: same, wantErr: "not an executable"},
		{name: "beside, same build", sameBuild: same, want: beside},
		{name: "beside, another build", sameBuild: differ, want: self},
		{name: "nothing beside", sameBuild: same, removed: true, want: self},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.removed {
				if err := os.Rename(beside, beside+".away"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Rename(beside+".away", beside) })
			}
			got, err := childExecutable(tc.given, self, tc.sameBuild)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("childExecutable = %q, %v; want an error about %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("childExecutable = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestSameBuild(t *testing.T) {
	// This test binary against a copy of itself: the same build facts, so
	// only the files' times tell a stale copy.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	self, copyOf := filepath.Join(dir, "self"), filepath.Join(dir, "copy")
	for _, f := range []string{self, copyOf} {
		if err := os.WriteFile(f, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if !sameBuild(self, copyOf) {
		t.Fatal("a copy written with it is not taken for the same build")
	}
	old := time.Now().Add(-builtTogether - time.Minute)
	if err := os.Chtimes(copyOf, old, old); err != nil {
		t.Fatal(err)
	}
	if sameBuild(self, copyOf) {
		t.Fatal("a copy written long before is taken for the same build")
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if sameBuild(self, plain) || sameBuild(plain, plain) {
		t.Fatal("a file without build information is taken for the same build")
	}
}
