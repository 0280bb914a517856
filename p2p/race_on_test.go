//go:build race

package p2p

// raceEnabled reports whether the race detector is on; the burst test
// shrinks under it (the detector slows libp2p roughly tenfold).
const raceEnabled = true
