package apiserver

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/ethereum/go-ethereum/common"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/validator"
)

// routeConflictCheck is served only when the backend is a ConflictChecker.
const routeConflictCheck = "/api/v1/conflict-check"

// ConflictChecker is implemented by backends that answer the conflict
// check for block builders (validator.CheckConflict). When the Backend
// implements it, POST /api/v1/conflict-check and the gRPC service
// tempo.fastpay.v1.ConflictCheck are served. It must be safe for concurrent
// use; an input that is not a signed transaction of the chain is an error
// wrapping validator.ErrNotTransaction.
type ConflictChecker interface {
	CheckConflict(ctx context.Context, raw []byte) (*validator.ConflictReport, error)
}

// ConflictCheckResponse is the body of POST /api/v1/conflict-check; the
// gRPC answer carries the same fields. A builder refuses the transaction
// when Conflicts is not empty.
type ConflictCheckResponse struct {
	ChainTxHash string         `json:"chain_tx_hash"`
	Certified   bool           `json:"certified"`
	BlockHeight U64            `json:"block_height"`
	Conflicts   []JSONConflict `json:"conflicts"`
}

// JSONConflict is one reason a transaction conflicts.
type JSONConflict struct {
	Kind      string `json:"kind"`
	TxHash    string `json:"tx_hash,omitempty"`
	Account   string `json:"account,omitempty"`
	Token     string `json:"token,omitempty"`
	Available string `json:"available,omitempty"`
	Needed    string `json:"needed,omitempty"`
	Message   string `json:"message"`
}

func newConflictCheckResponse(r *validator.ConflictReport) ConflictCheckResponse {
	out := ConflictCheckResponse{ChainTxHash: r.ChainTxHash.Hex(), Certified: r.Certified, BlockHeight: U64(r.Block), Conflicts: []JSONConflict{}}
	for _, c := range r.Conflicts {
		j := JSONConflict{Kind: c.Kind, Message: c.Message}
		if c.TxHash != ([32]byte{}) {
			j.TxHash = c.TxHash.Hex()
		}
		if c.Kind == validator.ConflictOverdraw || c.Kind == validator.ConflictUnknownSpend {
			j.Account = c.Account.Hex()
		}
		if c.Kind == validator.ConflictOverdraw {
			j.Token = c.Token.Hex()
			j.Available, j.Needed = c.Available.String(), c.Needed.String()
		}
		out.Conflicts = append(out.Conflicts, j)
	}
	return out
}

func conflictProto(r *validator.ConflictReport) *fastpayv1.CheckConflictResponse {
	out := &fastpayv1.CheckConflictResponse{ChainTxHash: r.ChainTxHash.Bytes(), Certified: r.Certified, BlockHeight: r.Block}
	for _, c := range r.Conflicts {
		p := &fastpayv1.Conflict{Kind: c.Kind, Message: c.Message}
		if c.TxHash != ([32]byte{}) {
			p.TxHash = append([]byte(nil), c.TxHash[:]...)
		}
		if c.Account != (common.Address{}) {
			p.Account = &fastpayv1.Address{Data: c.Account.Bytes()}
		}
		if c.Kind == validator.ConflictOverdraw {
			p.Token = &fastpayv1.Address{Data: c.Token.Bytes()}
			p.Available, p.Needed = c.Available.String(), c.Needed.String()
		}
		out.Conflicts = append(out.Conflicts, p)
	}
	return out
}

// handleConflictCheck: POST {"raw_tx": "0x…"} (alias "tempo_tx").
func (s *Server) handleConflictCheck(w http.ResponseWriter, r *http.Request) {
	cc := s.backend.(ConflictChecker)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE", "request body exceeds "+strconv.FormatInt(s.cfg.MaxBodyBytes, 10)+" bytes")
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, "BODY_TIMEOUT", "request body not received within "+s.cfg.BodyReadTimeout.String())
		default:
			badRequest(w, "reading the body: "+err.Error())
		}
		return
	}
	o, err := decodeObject("", body, []string{"raw_tx", "tempo_tx"})
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	raw, ok, err := o.hexBytes("raw_tx")
	if err == nil && !ok {
		raw, ok, err = o.hexBytes("tempo_tx")
	}
	switch {
	case err != nil:
		badRequest(w, err.Error())
		return
	case !ok:
		badRequest(w, "raw_tx: required: the signed transaction in hex, as it would be sent to the chain")
		return
	}
	report, err := cc.CheckConflict(r.Context(), raw)
	switch {
	case errors.Is(err, validator.ErrNotTransaction):
		badRequest(w, "raw_tx: "+err.Error())
	case err != nil:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", err.Error())
	default:
		writeJSON(w, http.StatusOK, newConflictCheckResponse(report))
	}
}

// conflictService implements fastpayv1.ConflictCheckServer.
type conflictService struct {
	fastpayv1.UnimplementedConflictCheckServer
	cc ConflictChecker
}

func (c *conflictService) CheckConflict(ctx context.Context, req *fastpayv1.CheckConflictRequest) (*fastpayv1.CheckConflictResponse, error) {
	report, err := c.cc.CheckConflict(ctx, req.GetRawTx())
	switch {
	case errors.Is(err, validator.ErrNotTransaction):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case err != nil:
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return conflictProto(report), nil
}
