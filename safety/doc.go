// Package safety checks, after an end-to-end run of a multi-node testnet,
// that nothing unsafe happened (SPEC §7).
//
// Collect gathers every certificate, QC, piece of equivocation evidence and
// settlement stage from the sidecars' HTTP APIs (and the QCs light clients
// accepted) into a History, which serialises to JSON so a run can be
// re-checked offline. Check verifies the History, and optionally the Run the
// load driver recorded, against the safety invariants and returns a Report:
// violations, payment counts and time-to-QC percentiles per fault phase.
// A run may span several epochs (Committees): every object is verified
// against its own epoch's committee, and the invariants hold across epochs.
package safety
