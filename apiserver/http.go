package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/qc"
)

// Routes of the JSON HTTP API.
const (
	routeSubmit    = "/api/v1/submit-raw-tx"
	routeTxStatus  = "/api/v1/tx/{hash}/status"
	routeTxQC      = "/api/v1/tx/{hash}/qc"
	routeChainHead = "/api/v1/chain/head"
	routeCommittee = "/api/v1/committee"
	routeInfo      = "/api/v1/info"
	routeBulletin  = "/api/v1/bulletin"
	routePayments  = "/api/v1/payments"
	routeEvidence  = "/api/v1/evidence"
	routeEvents    = "/api/v1/events"
	routeHealth    = "/healthz"
	routeLive      = "/livez"
	routeReady     = "/readyz"
	routeMetrics   = "/metrics"
)

func (s *Server) routes() {
	post, get := []string{http.MethodPost}, []string{http.MethodGet, http.MethodHead}
	s.route(routeSubmit, post, s.handleSubmit)
	s.route(routeTxStatus, get, s.handleTxStatus)
	s.route(routeTxQC, get, s.handleTxQC)
	s.route(routeChainHead, get, s.handleChainHead)
	s.route(routeCommittee, get, s.handleCommittee)
	s.route(routeInfo, get, s.handleInfo)
	s.route(routeBulletin, get, s.handleBulletin)
	s.route(routePayments, get, s.handlePayments)
	s.route(routeEvidence, get, s.handleEvidence)
	s.route(routeEvents, []string{http.MethodGet}, s.handleEvents)
	s.route(routeHealth, get, s.handleHealth)
	s.route(routeLive, get, s.handleLive)
	s.route(routeReady, get, s.handleReady)
	if _, ok := s.backend.(MeshReporter); ok {
		s.route(routeMesh, get, s.handleMesh)
	}
	if _, ok := s.backend.(ConflictChecker); ok {
		s.route(routeConflictCheck, post, s.handleConflictCheck)
	}
	if bk, ok := s.backend.(BindingKeeper); ok && bk.TakesBindings() {
		s.route(routeBindings, append(get, http.MethodPost), s.handleBindings)
	}
	if s.cfg.MetricsListenAddr == "" {
		s.route(routeMetrics, get, s.metricsHandler().ServeHTTP)
	}
}

// metricsHandler serves the backend's metrics merged with the API's own.
func (s *Server) metricsHandler() http.Handler {
	gatherers := prometheus.Gatherers{s.registry}
	if g := s.backend.Gatherer(); g != nil {
		gatherers = append(prometheus.Gatherers{g}, gatherers...)
	}
	return promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// route registers a path for the given methods; other methods get a JSON 405.
func (s *Server) route(pattern string, methods []string, h http.HandlerFunc) {
	allow := ""
	for i, m := range methods {
		if i > 0 {
			allow += ", "
		}
		allow += m
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		for _, m := range methods {
			if r.Method == m {
				h(w, r)
				return
			}
		}
		w.Header().Set("Allow", allow+", OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", r.Method+" is not allowed here; use "+allow)
	})
}

// ErrorResponse is the body of every error response.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody is an error: a stable upper-case code (BAD_REQUEST, NOT_FOUND,
// METHOD_NOT_ALLOWED, BODY_TOO_LARGE, BODY_TIMEOUT, UNAVAILABLE,
// CHAIN_UNREACHABLE, CORS_ORIGIN_NOT_ALLOWED, INTERNAL) and a human-readable
// message.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		code = http.StatusInternalServerError
		buf.Reset()
		_ = enc.Encode(ErrorResponse{ErrorBody{"INTERNAL", "encoding the response failed"}})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, ErrorResponse{ErrorBody{Code: code, Message: message}})
}

func badRequest(w http.ResponseWriter, message string) {
	writeError(w, http.StatusBadRequest, "BAD_REQUEST", message)
}

// ---- submit ----

// SubmitResponse is the body of a submit-raw-tx answer.
type SubmitResponse struct {
	TxHash      string           `json:"tx_hash"`
	Stage       string           `json:"stage,omitempty"`
	CertCount   int              `json:"cert_count"`
	Quorum      int              `json:"quorum"`
	QCFormed    bool             `json:"qc_formed"`
	QCHash      string           `json:"qc_hash,omitempty"`
	Certificate *JSONCertificate `json:"certificate,omitempty"`
	QC          *JSONQC          `json:"qc,omitempty"`
	// WaitTimedOut is set when ?wait=qc ended before the QC formed.
	WaitTimedOut bool `json:"wait_timed_out,omitempty"`
}

// SubmitRejectResponse is the body of a rejected submit-raw-tx (422, or 503
// for TEMPORARY_UNAVAILABLE).
type SubmitRejectResponse struct {
	TxHash string     `json:"tx_hash"`
	Reject JSONReject `json:"reject"`
}

func (s *Server) handleSubmit(w http.ResponseWriter, r *http.Request) {
	query := r.URL.Query()
	var waitQC bool
	switch v := query.Get("wait"); v {
	case "":
	case "qc":
		waitQC = true
	default:
		badRequest(w, "wait: the only supported value is \"qc\", got "+strconv.Quote(truncate(v, 40)))
		return
	}
	timeout := s.cfg.DefaultWaitTimeout
	if v := query.Get("timeout_ms"); v != "" {
		ms, err := parseDecimalU64(v)
		if err != nil || ms == 0 {
			badRequest(w, "timeout_ms: must be a positive integer of milliseconds")
			return
		}
		if ms > uint64(s.cfg.StreamTimeout/time.Millisecond) {
			timeout = s.cfg.StreamTimeout
		} else {
			timeout = time.Duration(ms) * time.Millisecond
		}
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE", "request body exceeds "+strconv.FormatInt(s.cfg.MaxBodyBytes, 10)+" bytes")
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The connection is unusable for another request: the rest of
			// the body is still on its way.
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, "BODY_TIMEOUT", "request body not received within "+s.cfg.BodyReadTimeout.String())
			return
		}
		badRequest(w, "reading the body: "+err.Error())
		return
	}
	req, err := decodeSubmitRawTx(body, s.backend.Info().ChainID)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	in, err := req.Tx.TxHashInput()
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	txHash := qc.TxHash(in)
	board := s.backend.Board()

	var sub *bulletin.Subscription
	if waitQC {
		// Subscribe before submitting so the QC cannot slip by unseen.
		sub = board.SubscribeTx(txHash, func(ev *bulletin.Event) bool { return ev.Kind == bulletin.EventQC })
		defer sub.Close()
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.StreamTimeout)
	defer cancel()
	cert, err := s.backend.Submit(ctx, req)
	if err != nil {
		rej := rejectOf(err)
		s.metrics.submissions.WithLabelValues("http", rej.Code.String()).Inc()
		code := http.StatusUnprocessableEntity
		if rej.Code == fastpayv1.RejectCode_TEMPORARY_UNAVAILABLE {
			code = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "1")
		}
		writeJSON(w, code, SubmitRejectResponse{TxHash: txHash.Hex(), Reject: JSONReject{Code: rej.Code.String(), Message: rej.Message}})
		return
	}
	s.metrics.submissions.WithLabelValues("http", "certified").Inc()

	resp := SubmitResponse{TxHash: cert.TxHash.Hex()}
	c := NewJSONCertificate(&cert)
	resp.Certificate = &c

	var q *qc.QC
	if waitQC {
		q = s.waitQC(r.Context(), sub, cert.TxHash, timeout)
		resp.WaitTimedOut = q == nil
	}
	st, ok := board.Status(cert.TxHash)
	if ok {
		resp.CertCount, resp.Quorum, resp.Stage = len(st.Certs), st.Quorum, st.Stage.String()
		if q == nil {
			q = st.QC
		}
	} else {
		resp.CertCount, resp.Stage = 1, fastpayv1.TxLifecycleUpdate_ACCEPTED.String()
		resp.Quorum = s.backend.Committee().Quorum
	}
	if q != nil {
		resp.QCFormed, resp.QCHash = true, q.Hash.Hex()
		if waitQC {
			jq := NewJSONQC(q)
			resp.QC = &jq
		}
		if resp.Stage == fastpayv1.TxLifecycleUpdate_ACCEPTED.String() || resp.Stage == fastpayv1.TxLifecycleUpdate_STAGE_UNSPECIFIED.String() {
			resp.Stage = fastpayv1.TxLifecycleUpdate_CERTIFIED.String()
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// waitQC waits for the QC of txHash until timeout, the client leaving or the
// server stopping; nil when it did not form in time.
func (s *Server) waitQC(ctx context.Context, sub *bulletin.Subscription, txHash qc.Hash, timeout time.Duration) *qc.QC {
	board := s.backend.Board()
	if q, ok := board.QC(txHash); ok {
		return q
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	ticker := time.NewTicker(resyncInterval)
	defer ticker.Stop()
	for {
		select {
		case ev, ok := <-sub.C():
			if ok && ev.QC != nil {
				return ev.QC
			}
			if !ok {
				return nil
			}
		case <-ticker.C: // in case the subscription dropped the event
		case <-timer.C:
			q, _ := board.QC(txHash)
			return q
		case <-ctx.Done():
			return nil
		case <-s.closing:
			return nil
		}
		if q, ok := board.QC(txHash); ok {
			return q
		}
	}
}

// ---- transaction status and QC ----

// JSONStatusCert is a certificate as listed by the status endpoint.
type JSONStatusCert struct {
	Signer            JSONSigner `json:"signer"`
	EffectsHash       string     `json:"effects_hash"`
	CreatedUnixMillis U64        `json:"created_unix_millis"`
}

// TxStatusResponse is the body of GET /api/v1/tx/{hash}/status.
type TxStatusResponse struct {
	TxHash    string `json:"tx_hash"`
	Stage     string `json:"stage"`
	Sender    string `json:"sender,omitempty"`
	Recipient string `json:"recipient,omitempty"`
	// Amount (token units) and Token are the certified effects' (absent
	// while only a stage is known of the transaction).
	Amount              *U64             `json:"amount,omitempty"`
	Token               string           `json:"token,omitempty"`
	CertCount           int              `json:"cert_count"`
	Quorum              int              `json:"quorum"`
	QCFormed            bool             `json:"qc_formed"`
	QCHash              string           `json:"qc_hash,omitempty"`
	BlockHeight         U64              `json:"block_height"`
	Certificates        []JSONStatusCert `json:"certificates"`
	FirstSeenUnixMillis U64              `json:"first_seen_unix_millis"`
	QCUnixMillis        U64              `json:"qc_unix_millis,omitempty"`
	// Stages maps each stage reached to when this node saw it (unix millis).
	Stages map[string]U64 `json:"stages"`
	// SettlementFailure is the last settlement failure reported for the
	// transaction ("" for none).
	SettlementFailure string `json:"settlement_failure,omitempty"`
}

// newTxStatusResponse describes what the board knows of one transaction.
func newTxStatusResponse(st *bulletin.TxStatus) TxStatusResponse {
	resp := TxStatusResponse{
		TxHash: st.TxHash.Hex(), Stage: st.Stage.String(), CertCount: len(st.Certs), Quorum: st.Quorum,
		BlockHeight: U64(st.BlockHeight), Certificates: make([]JSONStatusCert, len(st.Certs)),
		FirstSeenUnixMillis: U64(millisOf(st.FirstSeen)), Stages: make(map[string]U64, len(st.StageAt)),
		SettlementFailure: st.SettlementFailure,
	}
	if st.Sender != (qc.Address{}) || st.Recipient != (qc.Address{}) {
		resp.Sender, resp.Recipient = st.Sender.Hex(), st.Recipient.Hex()
	}
	if st.HasEffects {
		amount := U64(st.Effects.Amount)
		resp.Amount, resp.Token = &amount, st.Effects.Asset.Hex()
	}
	for i := range st.Certs {
		c := &st.Certs[i]
		resp.Certificates[i] = JSONStatusCert{Signer: JSONSigner{Name: c.SignerName, ID: c.Signer.Hex()},
			EffectsHash: c.EffectsHash.Hex(), CreatedUnixMillis: U64(c.CreatedUnixMillis)}
	}
	if st.QC != nil {
		resp.QCFormed, resp.QCHash, resp.QCUnixMillis = true, st.QC.Hash.Hex(), U64(millisOf(st.QCAt))
	}
	for stage, at := range st.StageAt {
		resp.Stages[stage.String()] = U64(millisOf(at))
	}
	return resp
}

func (s *Server) txHashParam(w http.ResponseWriter, r *http.Request) (qc.Hash, bool) {
	h, err := ParseTxHash(r.PathValue("hash"))
	if err != nil {
		badRequest(w, err.Error())
		return h, false
	}
	return h, true
}

func (s *Server) handleTxStatus(w http.ResponseWriter, r *http.Request) {
	h, ok := s.txHashParam(w, r)
	if !ok {
		return
	}
	st, ok := s.txStatus(h)
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "transaction "+h.Hex()+" is not known to this node")
		return
	}
	writeJSON(w, http.StatusOK, newTxStatusResponse(&st))
}

func (s *Server) handleTxQC(w http.ResponseWriter, r *http.Request) {
	h, ok := s.txHashParam(w, r)
	if !ok {
		return
	}
	q, ok := s.txQC(h)
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no QC for transaction "+h.Hex()+" on this node")
		return
	}
	writeJSON(w, http.StatusOK, NewJSONQC(q))
}

// ---- chain, committee, node ----

// ChainHeadResponse is the body of GET /api/v1/chain/head.
type ChainHeadResponse struct {
	BlockHeight U64    `json:"block_height"`
	BlockHash   string `json:"block_hash"`
	UnixMillis  U64    `json:"unix_millis"`
}

func (s *Server) handleChainHead(w http.ResponseWriter, r *http.Request) {
	head, err := s.backend.ChainHead(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "chain head: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, ChainHeadResponse{BlockHeight: U64(head.Number), BlockHash: Hex0x(head.Hash[:]), UnixMillis: U64(head.UnixMillis)})
}

// JSONMember is one committee member.
type JSONMember struct {
	Name      string   `json:"name"`
	ID        string   `json:"id"`
	Seat      string   `json:"seat"`
	PeerID    string   `json:"peer_id"`
	Addrs     []string `json:"addrs"`
	Connected bool     `json:"connected"`
	Score     float64  `json:"score"`
	Self      bool     `json:"self"`
}

// CommitteeResponse is the body of GET /api/v1/committee.
type CommitteeResponse struct {
	ChainID  U64          `json:"chain_id"`
	Epoch    U64          `json:"epoch"`
	N        int          `json:"n"`
	F        int          `json:"f"`
	Quorum   int          `json:"quorum"`
	Hash     string       `json:"committee_hash"`
	QCShards int          `json:"qc_shards"`
	Members  []JSONMember `json:"members"`
	// Seats are the consensus keys of a committee from the chain (absent
	// for a committee file, whose members are their own seats).
	Seats []string `json:"seats,omitempty"`
	// On a network that changes epochs (all absent otherwise):
	// EpochLength is L in blocks; NextEpochBlock the first block of the
	// next epoch, (epoch+1)·L: this committee signs while the head is below
	// it; NextCommitteeBlock, one before, is the block whose state decides
	// the next committee, known once the chain reached it.
	EpochLength        U64 `json:"epoch_length,omitempty"`
	NextEpochBlock     U64 `json:"next_epoch_block,omitempty"`
	NextCommitteeBlock U64 `json:"next_committee_block,omitempty"`
	// HeadHeight is the chain head this sidecar followed when it answered,
	// and BlocksLeft the blocks from it to NextEpochBlock (0 once reached);
	// both absent without epochs or while the head is not known.
	HeadHeight *U64 `json:"head_height,omitempty"`
	BlocksLeft *U64 `json:"blocks_left,omitempty"`
}

// handleCommittee: the current committee, with each member's connection
// state; ?epoch=E another epoch's, on a network that changes epochs.
func (s *Server) handleCommittee(w http.ResponseWriter, r *http.Request) {
	c := s.backend.Committee()
	if q := r.URL.Query().Get("epoch"); q != "" {
		e, err := strconv.ParseUint(q, 10, 64)
		if err != nil {
			badRequest(w, "epoch: want a decimal number")
			return
		}
		if e != c.Epoch {
			ec, ok := s.backend.(EpochCommittees)
			if !ok {
				writeError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("this network stays in epoch %d", c.Epoch))
				return
			}
			if c, err = ec.CommitteeAt(r.Context(), e); err != nil {
				writeError(w, http.StatusNotFound, "NOT_FOUND", err.Error())
				return
			}
		}
	}
	resp := CommitteeResponse{ChainID: U64(c.ChainID), Epoch: U64(c.Epoch), N: c.N, F: c.F, Quorum: c.Quorum,
		Hash: c.Hash.Hex(), QCShards: c.QCShards, Members: make([]JSONMember, len(c.Members))}
	for i, m := range c.Members {
		addrs := m.Addrs
		if addrs == nil {
			addrs = []string{}
		}
		seat := m.Seat
		if seat == (qc.ValidatorID{}) {
			seat = m.ID
		}
		resp.Members[i] = JSONMember{Name: m.Name, ID: m.ID.Hex(), Seat: seat.Hex(), PeerID: m.PeerID, Addrs: addrs,
			Connected: m.Connected, Score: m.Score, Self: m.Self}
	}
	for _, seat := range c.Seats {
		resp.Seats = append(resp.Seats, seat.Hex())
	}
	s.addSchedule(r.Context(), &resp, c)
	writeJSON(w, http.StatusOK, resp)
}

// addSchedule fills in where the committee's epoch ends and where the
// chain head is, on a network that changes epochs.
func (s *Server) addSchedule(ctx context.Context, resp *CommitteeResponse, c CommitteeInfo) {
	l := c.EpochLength
	if l == 0 || c.Epoch >= math.MaxUint64/l { // (epoch+1)·L must fit in 64 bits
		return
	}
	next := (c.Epoch + 1) * l
	resp.EpochLength, resp.NextEpochBlock, resp.NextCommitteeBlock = U64(l), U64(next), U64(next-1)
	head, err := s.backend.ChainHead(ctx)
	if err != nil {
		return // the schedule still helps; the page shows the head as unknown
	}
	h, left := U64(head.Number), U64(0)
	if head.Number < next {
		left = U64(next - head.Number)
	}
	resp.HeadHeight, resp.BlocksLeft = &h, &left
}

// InfoResponse is the body of GET /api/v1/info.
type InfoResponse struct {
	Name        string   `json:"name"`
	ID          string   `json:"id"`
	Pubkey      string   `json:"pubkey"`
	PeerID      string   `json:"peer_id"`
	ListenAddrs []string `json:"listen_addrs"`
	GossipPeers []string `json:"gossip_peers"`
	ChainID     U64      `json:"chain_id"`
	Epoch       U64      `json:"epoch"`
	// BoardEpochs are the epochs whose bulletin boards the node serves
	// (GET /api/v1/bulletin?epoch=E): the current, then earlier ones kept
	// after a boundary, newest first.
	BoardEpochs []U64 `json:"board_epochs"`
}

func (s *Server) handleInfo(w http.ResponseWriter, _ *http.Request) {
	info := s.backend.Info()
	nonNil := func(v []string) []string {
		if v == nil {
			return []string{}
		}
		return v
	}
	writeJSON(w, http.StatusOK, InfoResponse{Name: info.Name, ID: info.ID.Hex(), Pubkey: info.ID.Hex(), PeerID: info.PeerID,
		ListenAddrs: nonNil(info.ListenAddrs), GossipPeers: nonNil(info.GossipPeers), ChainID: U64(info.ChainID), Epoch: U64(info.Epoch),
		BoardEpochs: s.boardEpochs(info.Epoch)})
}

// ---- bulletin and evidence ----

// BulletinResponse is the body of GET /api/v1/bulletin.
type BulletinResponse struct {
	Certificates []JSONCertificate `json:"certificates"`
	QCs          []JSONQC          `json:"qcs"`
	NextCursor   string            `json:"next_cursor"`
}

func (s *Server) handleBulletin(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	var q bulletin.Query
	if tx := v.Get("tx"); tx != "" {
		h, err := ParseTxHash(tx)
		if err != nil {
			badRequest(w, "tx: "+err.Error())
			return
		}
		q.TxHash = &h
	}
	if addr := v.Get("address"); addr != "" {
		if q.TxHash != nil {
			badRequest(w, "give tx or address, not both")
			return
		}
		a, err := ParseAddress(addr)
		if err != nil {
			badRequest(w, "address: "+err.Error())
			return
		}
		q.Address = &a
	}
	if since := v.Get("since"); since != "" {
		ms, err := parseDecimalU64(since)
		if err != nil {
			badRequest(w, "since: unix millis "+err.Error())
			return
		}
		q.SinceUnixMillis = ms
	}
	if limit := v.Get("limit"); limit != "" {
		n, err := parseDecimalU64(limit)
		if err != nil || n > 1<<31 {
			badRequest(w, "limit: must be a non-negative integer (0: the default page)")
			return
		}
		q.Limit = int(n)
	}
	q.Cursor = v.Get("cursor")
	if len(q.Cursor) > 64 {
		badRequest(w, "cursor: too long")
		return
	}
	board := s.backend.Board()
	if e := v.Get("epoch"); e != "" {
		n, err := parseDecimalU64(e)
		if err != nil {
			badRequest(w, "epoch: "+err.Error())
			return
		}
		var ok bool
		if board, ok = s.boardOf(n); !ok {
			writeError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("this node keeps no board of epoch %d", n))
			return
		}
	}
	page, err := board.Query(q)
	if err == nil && q.TxHash != nil && v.Get("epoch") == "" {
		// A transaction certified before a boundary is on an earlier
		// epoch's board (and, signed again after it, on the current).
		seen := make(map[qc.Hash]bool, len(page.QCs))
		for _, held := range page.QCs {
			seen[held.Hash] = true
		}
		for _, eb := range s.earlierBoards() {
			p, err := eb.Board.Query(q)
			if err != nil {
				continue
			}
			page.Certs = append(page.Certs, p.Certs...)
			for _, held := range p.QCs {
				if !seen[held.Hash] {
					seen[held.Hash] = true
					page.QCs = append(page.QCs, held)
				}
			}
		}
	}
	if err != nil {
		if errors.Is(err, bulletin.ErrBadCursor) {
			badRequest(w, "cursor: "+err.Error())
			return
		}
		writeError(w, http.StatusInternalServerError, "INTERNAL", err.Error())
		return
	}
	resp := BulletinResponse{Certificates: make([]JSONCertificate, len(page.Certs)), QCs: make([]JSONQC, len(page.QCs)), NextCursor: page.NextCursor}
	for i := range page.Certs {
		resp.Certificates[i] = NewJSONCertificate(&page.Certs[i])
	}
	for i, q := range page.QCs {
		resp.QCs[i] = NewJSONQC(q)
	}
	writeJSON(w, http.StatusOK, resp)
}

// Bounds of GET /api/v1/payments.
const (
	// DefaultPaymentsLimit is the page size when limit is not given.
	DefaultPaymentsLimit = 50
	// MaxPaymentsLimit caps limit: each payment carries its certificates.
	MaxPaymentsLimit = 500
)

// PaymentsResponse is the body of GET /api/v1/payments: the payments the
// board still holds, newest first, each as GET /api/v1/tx/{hash}/status
// describes it.
type PaymentsResponse struct {
	Payments   []TxStatusResponse `json:"payments"`
	NextCursor string             `json:"next_cursor"`
}

func (s *Server) handlePayments(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	q := bulletin.PaymentsQuery{Limit: DefaultPaymentsLimit, Cursor: v.Get("cursor")}
	if limit := v.Get("limit"); limit != "" {
		n, err := parseDecimalU64(limit)
		if err != nil || n == 0 {
			badRequest(w, "limit: must be a positive integer (at most "+strconv.Itoa(MaxPaymentsLimit)+")")
			return
		}
		q.Limit = int(min(n, MaxPaymentsLimit))
	}
	if len(q.Cursor) > 16 {
		badRequest(w, "cursor: too long")
		return
	}
	page, err := s.backend.Board().Payments(q)
	if err != nil {
		if errors.Is(err, bulletin.ErrBadCursor) {
			badRequest(w, "cursor: "+err.Error())
			return
		}
		writeError(w, http.StatusInternalServerError, "INTERNAL", err.Error())
		return
	}
	resp := PaymentsResponse{Payments: make([]TxStatusResponse, len(page.Payments)), NextCursor: page.NextCursor}
	for i := range page.Payments {
		resp.Payments[i] = newTxStatusResponse(&page.Payments[i])
	}
	writeJSON(w, http.StatusOK, resp)
}

// EvidenceResponse is the body of GET /api/v1/evidence.
type EvidenceResponse struct {
	Evidence []JSONEquivocation `json:"evidence"`
}

func (s *Server) handleEvidence(w http.ResponseWriter, _ *http.Request) {
	ev := s.backend.Board().Evidence()
	for _, eb := range s.earlierBoards() {
		ev = append(ev, eb.Board.Evidence()...)
	}
	resp := EvidenceResponse{Evidence: make([]JSONEquivocation, len(ev))}
	for i := range ev {
		resp.Evidence[i] = NewJSONEquivocation(&ev[i])
	}
	writeJSON(w, http.StatusOK, resp)
}
