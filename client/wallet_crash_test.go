package client_test

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/allegro-mesh/allegro/client"
	"github.com/allegro-mesh/allegro/qc"
)

const walletCrashEnv = "ALLEGRO_WALLET_CRASH_FILE"

// crashRequest is the request bytes the child records for nonce n.
func crashRequest(n uint64) []byte {
	return []byte(fmt.Sprintf("signed-request-%d-%s", n, strings.Repeat("z", int(n%7)*10)))
}

// TestWalletCrashChild is the child process of TestWalletCrash; it does
// nothing in a normal run. Like a wallet restarting, it lists what is
// pending, fills the gaps and marks everything done (as if resubmitted and
// certified), then reserves nonces in a loop, printing each one only after
// Reserve returned, recording a request for most and marking some done. The
// small compaction bound and the small live state make compactions
// frequent, so kills land in them too.
func TestWalletCrashChild(t *testing.T) {
	path := os.Getenv(walletCrashEnv)
	if path == "" {
		t.Skip("child process of TestWalletCrash")
	}
	fail := func(err error) {
		fmt.Println("FAIL", err)
		os.Exit(3)
	}
	w, err := client.OpenWallet(path, aliceKey, chainID, client.WithCompactAt(2048))
	if err != nil {
		fail(err)
	}
	fmt.Println("READY", w.Next(qc.NonceKey{}))
	pending := w.Pending()
	for _, p := range pending {
		switch {
		case p.Request == nil:
			fmt.Println("PENDING", p.Nonce, "gap")
		case bytes.Equal(p.Request, crashRequest(p.Nonce)):
			fmt.Println("PENDING", p.Nonce, "request")
		default:
			fail(fmt.Errorf("pending %d holds %q", p.Nonce, p.Request))
		}
	}
	fmt.Println("LISTED", len(pending))
	record := func(n uint64) {
		if err := w.Record(qc.NonceKey{}, n, crashRequest(n)); err != nil {
			fail(err)
		}
		fmt.Println("RECORDED", n)
	}
	done := func(n uint64) {
		fmt.Println("DONING", n)
		if err := w.Done(qc.NonceKey{}, n); err != nil {
			fail(err)
		}
		fmt.Println("DONE", n)
	}
	for _, p := range pending {
		if p.Request == nil {
			record(p.Nonce) // fill the gap
		}
		done(p.Nonce)
	}
	for range 20_000 {
		n, err := w.Reserve(qc.NonceKey{})
		if err != nil {
			fail(err)
		}
		fmt.Println("NONCE", n)
		if n%3 == 2 {
			continue // left unrecorded: a gap
		}
		record(n)
		if n%4 == 0 {
			done(n)
		}
	}
	fmt.Println("FINISHED")
}

// TestWalletCrash kills a process that reserves nonces with SIGKILL at random
// points, many times, restarting it on the same journal: no nonce is ever
// handed out twice, and at every restart Pending lists every recorded
// request not marked done, byte for byte, and every gap.
func TestWalletCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "crash.wallet")
	rng := rand.New(rand.NewPCG(7, 11))
	handed := map[uint64]int{} // nonce → run that printed it
	recorded := map[uint64]bool{}
	doning := map[uint64]bool{}
	done := map[uint64]bool{}
	const minRuns, maxRuns = 20, 40
	deadline := time.Now().Add(60 * time.Second)
	kills, runs, checked := 0, 0, 0
	// checkListed checks a pending list against everything printed so far:
	// every recorded request not being marked done, and every gap, is
	// listed.
	checkListed := func(run int, listed map[uint64]bool) {
		t.Helper()
		checked++
		for n := range handed {
			switch {
			case doning[n]:
				// Done may or may not have reached the disk.
			case recorded[n] && !listed[n]:
				t.Fatalf("run %d: nonce %d was recorded but is not pending", run, n)
			case !recorded[n] && n%3 == 2 && !listed[n]:
				t.Fatalf("run %d: the gap at nonce %d is not pending", run, n)
			}
		}
	}
	for run := 0; run < maxRuns && (run < minRuns || len(handed) < 200); run++ {
		if time.Now().After(deadline) {
			if run < minRuns {
				t.Fatalf("only %d runs before the deadline", run)
			}
			break
		}
		runs++
		cmd := exec.Command(os.Args[0], "-test.run=^TestWalletCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), walletCrashEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := rng.IntN(120) // lines of output; 0: while opening
		lines := 0
		killed := false
		kill := func() {
			// A random extra delay lands the kill anywhere in the next
			// operation: before, during or after its write and fsync.
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			killed = true
			kills++
		}
		if killAfter == 0 {
			kill()
		}
		listed := map[uint64]bool{}
		maxSoFar := int64(-1)
		for n := range handed {
			maxSoFar = max(maxSoFar, int64(n))
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 {
				continue
			}
			n, _ := strconv.ParseUint(f[1], 10, 64)
			switch f[0] {
			case "PENDING":
				if done[n] {
					t.Fatalf("run %d: nonce %d was marked done but is pending", run, n)
				}
				listed[n] = true
			case "LISTED":
				checkListed(run, listed)
			case "READY":
				if int64(n) <= maxSoFar {
					t.Fatalf("run %d: wallet opened with next nonce %d, but %d was handed out", run, n, maxSoFar)
				}
			case "NONCE":
				if prev, ok := handed[n]; ok {
					t.Fatalf("run %d: nonce %d handed out again (first in run %d)", run, n, prev)
				}
				handed[n] = run
			case "RECORDED":
				recorded[n] = true
			case "DONING":
				doning[n] = true
			case "DONE":
				done[n] = true
			case "FAIL":
				t.Fatalf("run %d: child: %s", run, sc.Text())
			}
			lines++
			if !killed && lines >= killAfter {
				kill()
			}
		}
		_ = cmd.Wait()
	}
	if kills < runs/2 {
		t.Fatalf("only %d of %d runs were killed", kills, runs)
	}
	if checked < runs/3 {
		t.Fatalf("the pending list was checked in only %d of %d runs", checked, runs)
	}

	// The last run's leftovers, read by this process.
	w, err := client.OpenWallet(path, aliceKey, chainID)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var maxHanded uint64
	for n := range handed {
		maxHanded = max(maxHanded, n)
	}
	if next := w.Next(qc.NonceKey{}); len(handed) > 0 && next <= maxHanded {
		t.Fatalf("next nonce %d after the runs, but %d was handed out", next, maxHanded)
	}
	listed := map[uint64]bool{}
	for _, p := range w.Pending() {
		if p.Request != nil && !bytes.Equal(p.Request, crashRequest(p.Nonce)) {
			t.Fatalf("pending %d holds %q", p.Nonce, p.Request)
		}
		if done[p.Nonce] {
			t.Fatalf("nonce %d was marked done but is pending", p.Nonce)
		}
		listed[p.Nonce] = true
	}
	checkListed(runs, listed)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Compaction keeps the journal bounded across the crashes: the live
	// state is a few dozen reservations.
	if st.Size() > 16<<10 {
		t.Fatalf("journal is %d bytes after the runs", st.Size())
	}
	t.Logf("%d runs, %d SIGKILLs, %d pending lists checked, %d nonces handed out, %d recorded, %d done, journal %d bytes at the end",
		runs, kills, checked, len(handed), len(recorded), len(done), st.Size())
}
