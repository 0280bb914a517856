package client

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/qc"
)

// ErrNotFound is returned by Status when no endpoint knows the transaction.
var ErrNotFound = errors.New("transaction not known to the sidecar")

// ErrNotFoundAnywhere is returned by Status, with ErrNotFound, when every
// endpoint answered that it does not know the transaction (none was
// unreachable or failed otherwise).
var ErrNotFoundAnywhere = errors.New("no sidecar asked knows the transaction")

// TxStatus is a sidecar's view of a transaction (its HTTP status API).
type TxStatus struct {
	TxHash      qc.Hash
	Stage       fastpayv1.TxLifecycleUpdate_Stage
	BlockHeight uint64
	CertCount   int
	Quorum      int
	QCFormed    bool
	// QCHash is the QC's hash when QCFormed.
	QCHash qc.Hash
	// Signers names the validators whose certificates the sidecar holds.
	Signers  []string
	Endpoint string // the sidecar that answered
}

// statusDoc is the part of GET /api/v1/tx/{hash}/status the client reads.
// Integers are decimal strings (or plain numbers).
type statusDoc struct {
	Stage       string          `json:"stage"`
	BlockHeight json.RawMessage `json:"block_height"`
	CertCount   int             `json:"cert_count"`
	Quorum      int             `json:"quorum"`
	QCFormed    bool            `json:"qc_formed"`
	QCHash      string          `json:"qc_hash"`
	Certs       []struct {
		Signer struct {
			Name string `json:"name"`
			ID   string `json:"id"`
		} `json:"signer"`
	} `json:"certificates"`
}

// ParseHash decodes a 32-byte hash (a transaction's or a QC's) written as
// 64 hex digits, 0x optional.
func ParseHash(s string) (qc.Hash, error) {
	var h qc.Hash
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "0x") || strings.HasPrefix(t, "0X") {
		t = t[2:]
	}
	if len(t) != 2*len(h) {
		return h, fmt.Errorf("%q is not a 32-byte hash (64 hex digits)", s)
	}
	if _, err := hex.Decode(h[:], []byte(t)); err != nil {
		return h, fmt.Errorf("%q is not a 32-byte hash: %v", s, err)
	}
	return h, nil
}

func parseU64(raw json.RawMessage) (uint64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		s = string(raw)
	}
	return strconv.ParseUint(s, 10, 64)
}

// Status asks the endpoints, in order, for txHash's status over the
// sidecars' HTTP API (GET http://ENDPOINT/api/v1/tx/{hash}/status: the HTTP
// API shares the gRPC listen address). It returns the first answer; when
// every endpoint fails the error wraps ErrNotFound if one of them answered
// 404, and ErrNotFoundAnywhere too if all of them did.
func (c *Client) Status(ctx context.Context, txHash qc.Hash) (*TxStatus, error) {
	var errs []error
	notFound := 0
	for _, ep := range c.cfg.Endpoints {
		st, err := c.statusFrom(ctx, ep, txHash)
		if err == nil {
			return st, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, ErrNotFound) {
			notFound++
		}
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	switch notFound {
	case 0:
	case len(c.cfg.Endpoints):
		return nil, fmt.Errorf("%w: %w: %w", ErrNotFoundAnywhere, ErrNotFound, err)
	default:
		return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return nil, err
}

func (c *Client) statusFrom(ctx context.Context, ep string, txHash qc.Hash) (*TxStatus, error) {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	url := "http://" + ep + "/api/v1/tx/" + txHash.Hex() + "/status"
	hreq, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.cfg.HTTPClient.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ep, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ep, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%s: %w", ep, ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%s: status API answered %s: %.200s", ep, resp.Status, body)
	}
	var doc statusDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("%s: status document: %w", ep, err)
	}
	stage, ok := fastpayv1.TxLifecycleUpdate_Stage_value[doc.Stage]
	if !ok {
		return nil, fmt.Errorf("%s: unknown stage %q", ep, doc.Stage)
	}
	height, err := parseU64(doc.BlockHeight)
	if err != nil {
		return nil, fmt.Errorf("%s: block_height: %w", ep, err)
	}
	st := &TxStatus{TxHash: txHash, Stage: fastpayv1.TxLifecycleUpdate_Stage(stage), BlockHeight: height,
		CertCount: doc.CertCount, Quorum: doc.Quorum, QCFormed: doc.QCFormed, Endpoint: ep}
	if doc.QCHash != "" {
		if st.QCHash, err = ParseHash(doc.QCHash); err != nil {
			return nil, fmt.Errorf("%s: qc_hash: %w", ep, err)
		}
	}
	for _, c := range doc.Certs {
		name := c.Signer.Name
		if name == "" {
			name = c.Signer.ID
		}
		st.Signers = append(st.Signers, name)
	}
	return st, nil
}

// WaitSettled waits until a sidecar reports txHash FINALIZED on chain and
// returns that status. It polls the HTTP status API (see Status) every
// Config.PollInterval, entry endpoint first, rather than holding the
// submission stream open: polling survives a restart of the entry sidecar
// and needs only the transaction hash, while re-opening the stream would
// resubmit the payment, which sidecars may refuse once it is settled or
// expired. Unreachable endpoints and 404s (a sidecar that has not learnt the
// transaction yet) are retried until ctx ends; bound ctx. The status API does
// not report a reverted settlement: a payment whose settlement failed never
// becomes FINALIZED, so ctx's deadline is the caller's signal.
func (c *Client) WaitSettled(ctx context.Context, txHash qc.Hash) (*TxStatus, error) {
	var last error
	for {
		st, err := c.Status(ctx, txHash)
		switch {
		case err == nil && st.Stage >= fastpayv1.TxLifecycleUpdate_FINALIZED:
			return st, nil
		case err == nil:
			last = fmt.Errorf("stage %s at %s", st.Stage, st.Endpoint)
		default:
			last = err
		}
		if werr := wait(ctx, c.cfg.PollInterval); werr != nil {
			return nil, fmt.Errorf("waiting for %s to settle: %w (last: %v)", txHash, werr, last)
		}
	}
}
