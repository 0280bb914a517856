package validator

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestOpenStoreLocked: a data directory another store holds, in this
// process or in another (a helper process running TestHoldStoreHelper), is
// refused with ErrStoreLocked and a message naming the directory and the
// fix; once the holder in this process lets go it opens.
func TestOpenStoreLocked(t *testing.T) {
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	check := func(t *testing.T, dir string) {
		t.Helper()
		_, err := OpenStore(dir, 0, discard)
		if !errors.Is(err, ErrStoreLocked) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "data_dir") {
			t.Fatalf("second open: %v", err)
		}
	}
	t.Run("this process", func(t *testing.T) {
		dir := t.TempDir()
		s, err := OpenStore(dir, 0, discard)
		if err != nil {
			t.Fatal(err)
		}
		check(t, dir)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = OpenStore(dir, 0, discard)
		if err != nil {
			t.Fatalf("open after the holder closed: %v", err)
		}
		s.Close()
	})
	t.Run("another process", func(t *testing.T) {
		dir := t.TempDir()
		holder := exec.Command(os.Args[0], "-test.run=^TestHoldStoreHelper$")
		holder.Env = append(os.Environ(), "ALLEGRO_TEST_HOLD_STORE="+dir)
		out, err := holder.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdin, err := holder.StdinPipe() // the helper holds the store until it closes
		if err != nil {
			t.Fatal(err)
		}
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			stdin.Close()
			_ = holder.Wait()
		}()
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "held" {
			t.Fatalf("holder: %q, %v", line, err)
		}
		check(t, dir)
	})
}

// TestHoldStoreHelper opens the store named by ALLEGRO_TEST_HOLD_STORE,
// says "held" and keeps it open until stdin closes: the other process of
// TestOpenStoreLocked. Without the variable it does nothing.
func TestHoldStoreHelper(t *testing.T) {
	dir := os.Getenv("ALLEGRO_TEST_HOLD_STORE")
	if dir == "" {
		return
	}
	s, err := OpenStore(dir, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fmt.Println("held")
	_, _ = io.Copy(io.Discard, os.Stdin)
}
