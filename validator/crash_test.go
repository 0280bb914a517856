package validator

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

const (
	crashDirEnv  = "ALLEGRO_CRASH_CHILD_DIR"
	crashSeedEnv = "ALLEGRO_CRASH_CHILD_SEED"
	crashBudget  = 40 // dollars Alice can spend in total, across all runs
	crashMaxSeq  = 60
)

// crashPayment is the payment a child run with seed makes at nonce seq.
// Different seeds give different transactions for the same nonce, so every
// restart tries to double-sign every key an earlier run signed.
func crashPayment(seed, seq uint64) *payment {
	recipient := bob
	if (seed+seq)%2 == 1 {
		recipient = carol
	}
	return pay(aliceKey, seq, recipient, dollars(int64(1+(seed*7+seq)%3)))
}

// TestCrashChild is the child process of TestCrashSafety; it does nothing
// in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child process of TestCrashSafety")
	}
	seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	c := newCluster(t, 4)
	c.chain.SetBalance(token, alice, dollars(crashBudget))
	v := c.validator(t, 0, dir)
	fmt.Println("READY")
	for seq := uint64(0); seq < crashMaxSeq; seq++ {
		p := crashPayment(seed, seq)
		cert, err := v.Submit(context.Background(), p.request(t))
		if err != nil {
			fmt.Printf("REJECT %d %s\n", seq, RejectCodeOf(err))
			continue
		}
		// The certificate is released only after this line is written.
		fmt.Printf("SIGNED %d %s %d\n", seq, cert.TxHash.Hex(), cert.Effects.Amount)
	}
	fmt.Println("DONE")
}

// TestCrashSafety kills a validator process with SIGKILL at random points
// and restarts it on the same data directory, many times. Every released
// certificate is recorded; no contention key may ever get a second
// transaction, and the sum of certified debits never exceeds the balance.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns many processes")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	signed := map[uint64]string{} // seq → tx hash released
	amounts := map[uint64]uint64{}
	// Run until at least 30 restarts happened and either 15 certificates
	// were released or the budget is spent (how far a run gets before its
	// kill depends on timing), bounded in runs and time.
	const minRuns, maxRuns, minSigned = 30, 150, 15
	kills, runs := 0, 0
	deadline := time.Now().Add(2 * time.Minute)
	exhausted := false // some run hit INSUFFICIENT_FUNDS: the budget is spent
	for run := 0; run < minRuns || (len(signed) < minSigned && !exhausted); run++ {
		if run == maxRuns || time.Now().After(deadline) {
			t.Fatalf("after %d runs only %d certificates were released", run, len(signed))
		}
		runs++
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashSeedEnv+"="+strconv.Itoa(run))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of released certificates (zero: while
		// re-checking old nonces).
		killAfter := rng.IntN(4)
		decisions := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 0 {
				continue
			}
			switch f[0] {
			case "SIGNED":
				seq, _ := strconv.ParseUint(f[1], 10, 64)
				amt, _ := strconv.ParseUint(f[3], 10, 64)
				if prev, ok := signed[seq]; ok && prev != f[2] {
					t.Fatalf("run %d: nonce %d signed twice: %s then %s", run, seq, prev, f[2])
				}
				signed[seq], amounts[seq] = f[2], amt
				decisions++
			case "REJECT":
				exhausted = exhausted || f[2] == fastpayv1.RejectCode_INSUFFICIENT_FUNDS.String()
				continue
			case "READY":
			default:
				continue
			}
			if decisions >= killAfter {
				// A random extra delay lands the kill anywhere in the next
				// decision: before, during or after its fsync.
				time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
				_ = cmd.Process.Signal(syscall.SIGKILL)
				kills++
				break
			}
		}
		_ = cmd.Wait()
	}
	if kills < runs/2 {
		t.Fatalf("only %d of %d runs were killed", kills, runs)
	}

	var total uint64
	for _, a := range amounts {
		total += a
	}
	if total > crashBudget*1_000_000 {
		t.Fatalf("certified debits %d exceed the balance %d", total, crashBudget*1_000_000)
	}

	// A final restart: every released certificate is still guarded, a
	// conflicting transaction for any signed nonce is refused, and every
	// released debit is still counted.
	c := newCluster(t, 4)
	c.chain.SetBalance(token, alice, dollars(crashBudget))
	v := c.validator(t, 0, dir)
	for seq, txHash := range signed {
		k := qc.ContentionKey{Sender: qc.Address(alice), NonceSeq: seq}
		got, ok := v.SignedTx(k)
		if !ok || got.Hex() != txHash {
			t.Fatalf("nonce %d: released %s, store has %v (%v)", seq, txHash, got, ok)
		}
		_, err := v.Submit(context.Background(), crashPayment(1000+seq, seq).request(t))
		if RejectCodeOf(err) != fastpayv1.RejectCode_EQUIVOCATION && RejectCodeOf(err) != fastpayv1.RejectCode_REJECT_CODE_UNSPECIFIED {
			t.Fatalf("nonce %d: conflicting tx gave %v", seq, err)
		}
		if err == nil {
			// Only possible if the conflicting payment is the same tx.
			if cert, _ := v.ownCertificate(k); cert.TxHash.Hex() != txHash {
				t.Fatalf("nonce %d signed twice after restart", seq)
			}
		}
	}
	var stored uint64
	for _, d := range v.OverlayOf(qc.Address(alice)).Debits {
		stored += d.Amount
	}
	if stored < total || stored > crashBudget*1_000_000 {
		t.Fatalf("stored debits %d: released %d, budget %d", stored, total, crashBudget*1_000_000)
	}
	t.Logf("%d runs, %d SIGKILLs, %d certificates released, %d units debited (%d stored), budget spent: %v", runs, kills, len(signed), total, stored, exhausted)
}
