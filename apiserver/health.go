package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Three probes, from least to most demanding:
//
//   - /livez (liveness): the process serves its API. It depends on nothing
//     outside the process, so an orchestrator restarting on it never
//     restarts a sidecar for its chain or peers being away.
//   - /healthz: liveness and the chain head can be read (503 otherwise),
//     kept as it was for existing probes.
//   - /readyz (readiness): the sidecar can do its job, certify payments
//     into QCs: enough committee peers connected for a quorum, the chain
//     reachable with a fresh head, the state store open, the validator
//     signing (not in its doppelganger window). 503 otherwise,
//     with every check and what is missing.

// healthTimeout bounds the chain-head probe of /healthz and /readyz.
const healthTimeout = 2 * time.Second

// HealthResponse is the body of GET /healthz.
type HealthResponse struct {
	Status    string             `json:"status"`
	ChainHead *ChainHeadResponse `json:"chain_head,omitempty"`
	HeadAgeMs *int64             `json:"chain_head_age_ms,omitempty"`
	Error     *ErrorBody         `json:"error,omitempty"`
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	head, err := s.backend.ChainHead(ctx)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, HealthResponse{Status: "unavailable",
			Error: &ErrorBody{Code: "CHAIN_UNREACHABLE", Message: "chain head: " + err.Error()}})
		return
	}
	resp := HealthResponse{Status: "ok", ChainHead: &ChainHeadResponse{BlockHeight: U64(head.Number), BlockHash: Hex0x(head.Hash[:]), UnixMillis: U64(head.UnixMillis)}}
	if head.UnixMillis > 0 {
		age := time.Now().UnixMilli() - int64(head.UnixMillis)
		resp.HeadAgeMs = &age
	}
	writeJSON(w, http.StatusOK, resp)
}

// LiveResponse is the body of GET /livez.
type LiveResponse struct {
	Status string `json:"status"`
}

func (s *Server) handleLive(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, LiveResponse{Status: "ok"})
}

// Names of the readiness checks.
const (
	CheckCommitteePeers = "committee_peers"
	CheckChainReachable = "chain_reachable"
	CheckChainHeadFresh = "chain_head_fresh"
	CheckStateStore     = "state_store"
	CheckSigning        = "signing"
)

// ReadyCheck is one condition of readiness.
type ReadyCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// ReadyResponse is the body of GET /readyz: 200 when Ready, 503 otherwise.
// Missing names the failed checks; Checks holds all of them, in a fixed
// order.
type ReadyResponse struct {
	Ready   bool         `json:"ready"`
	Missing []string     `json:"missing"`
	Checks  []ReadyCheck `json:"checks"`
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	resp := s.readiness(ctx, time.Now())
	code := http.StatusOK
	if !resp.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, resp)
}

// readiness runs every check at time now.
func (s *Server) readiness(ctx context.Context, now time.Time) ReadyResponse {
	checks := []ReadyCheck{s.checkCommitteePeers()}
	checks = append(checks, s.checkChain(ctx, now)...)
	checks = append(checks, s.checkStore(), s.checkSigning())
	resp := ReadyResponse{Ready: true, Missing: []string{}, Checks: checks}
	for _, c := range checks {
		if !c.OK {
			resp.Ready = false
			resp.Missing = append(resp.Missing, c.Name)
		}
	}
	return resp
}

// checkCommitteePeers: a QC needs Quorum signatures, this validator's own
// and Quorum-1 from connected members (a node outside the committee needs
// all Quorum from peers).
func (s *Server) checkCommitteePeers() ReadyCheck {
	c := s.backend.Committee()
	need := c.Quorum
	connected, others := 0, 0
	var away []string
	for _, m := range c.Members {
		if m.Self {
			need--
			continue
		}
		others++
		if m.Connected {
			connected++
		} else {
			away = append(away, m.Name)
		}
	}
	detail := fmt.Sprintf("connected to %d of %d other committee members; a quorum of %d needs %d", connected, others, c.Quorum, max(need, 0))
	if len(away) > 0 {
		detail += "; not connected: " + strings.Join(away, ", ")
	}
	return ReadyCheck{Name: CheckCommitteePeers, OK: connected >= need, Detail: detail}
}

// checkChain: the chain node is connected and the head can be read, and the
// head is at most ReadyMaxHeadAge old (a head that stopped moving means the
// chain or the connection to it stalled, and payments would be judged
// against stale balances). The head's age is judged even while the node is
// away: it says how stale the sidecar's view is.
func (s *Server) checkChain(ctx context.Context, now time.Time) []ReadyCheck {
	head, err := s.backend.ChainHead(ctx)
	if err != nil {
		return []ReadyCheck{
			{Name: CheckChainReachable, Detail: "chain head: " + err.Error()},
			{Name: CheckChainHeadFresh, Detail: "no chain head"},
		}
	}
	reach := ReadyCheck{Name: CheckChainReachable, OK: true, Detail: fmt.Sprintf("block %d", head.Number)}
	if err := s.backend.ChainHealth(); err != nil {
		reach = ReadyCheck{Name: CheckChainReachable, Detail: err.Error()}
	}
	if head.UnixMillis == 0 {
		return []ReadyCheck{reach, {Name: CheckChainHeadFresh, Detail: fmt.Sprintf("block %d has no timestamp", head.Number)}}
	}
	// Dev chains with sub-second blocks run ahead of the wall clock: a head
	// from the future is fresh.
	age := max(now.Sub(time.UnixMilli(int64(head.UnixMillis))), 0).Round(time.Millisecond)
	fresh := ReadyCheck{Name: CheckChainHeadFresh, OK: age <= s.cfg.ReadyMaxHeadAge,
		Detail: fmt.Sprintf("block %d is %s old (at most %s)", head.Number, age, s.cfg.ReadyMaxHeadAge)}
	return []ReadyCheck{reach, fresh}
}

func (s *Server) checkSigning() ReadyCheck {
	if err := s.backend.SigningHealth(); err != nil {
		return ReadyCheck{Name: CheckSigning, Detail: err.Error()}
	}
	return ReadyCheck{Name: CheckSigning, OK: true, Detail: "signing"}
}

func (s *Server) checkStore() ReadyCheck {
	if err := s.backend.StoreHealth(); err != nil {
		return ReadyCheck{Name: CheckStateStore, Detail: err.Error()}
	}
	return ReadyCheck{Name: CheckStateStore, OK: true, Detail: "open"}
}
