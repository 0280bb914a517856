//go:build race

package sim

import (
	"os"
	"runtime"
	"testing"
)

// TestMain runs the race-enabled tests on one thread. The race runtime
// keeps one ThreadSanitizer context for all the timers of a synctest
// bubble, and a channel operation on an expired timer runs the timer on
// the operating thread under that context: two threads doing so at once
// corrupt it (a SIGSEGV or "CHECK failed" inside raceacquirectx, from
// time.(*timer).maybeRunChan), which every mock stream's delivery timer
// can trigger. Virtual time, and so every figure the tests check, is the
// same on one thread.
func TestMain(m *testing.M) {
	runtime.GOMAXPROCS(1)
	os.Exit(m.Run())
}
