//go:build !race

package p2p

// raceEnabled reports whether the race detector is on.
const raceEnabled = false
