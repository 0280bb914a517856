package safety

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/qc"
)

// SourceChain names the chain JSON-RPC endpoint among a History's sources.
const SourceChain = "chain"

// maxResponseBytes bounds one API response.
const maxResponseBytes = 256 << 20

// Collect gathers, from every sidecar in cfg, every certificate (paging
// through GET /api/v1/bulletin), the equivocation evidence
// (GET /api/v1/evidence), and for every transaction found or listed in
// cfg.TxHashes its status (GET /api/v1/tx/{hash}/status) and QC; it adds
// the QCs light clients accepted, the initial balances (of the token and of
// fee tokens), the committee file's settlement margin, the committees of
// every epoch and, with a ChainRPC, the senders' chain nonces.
//
// An unreachable sidecar is recorded in the History's sources and skipped.
// Collect returns an error for a bad configuration or committee file; when
// cfg.Timeout or ctx ends the collection early it returns what it gathered
// together with the error.
func Collect(ctx context.Context, cfg CollectConfig) (*History, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cf, err := committee.LoadFile(cfg.CommitteeFile)
	if err != nil {
		return nil, fmt.Errorf("safety: collect: %w", err)
	}
	var committee *qc.Committee
	if cf.FromChain() {
		if len(cfg.Epochs) == 0 {
			return nil, fmt.Errorf("safety: collect: committee file %s takes its committees from the chain: CollectConfig.Epochs must hold them", cfg.CommitteeFile)
		}
		committee, cfg.Epochs = cfg.Epochs[0], cfg.Epochs[1:]
	} else if committee, err = cf.Committee(); err != nil {
		return nil, fmt.Errorf("safety: collect: committee file %s: %w", cfg.CommitteeFile, err)
	}
	if _, err := NewCommittees(append([]*qc.Committee{committee}, cfg.Epochs...)...); err != nil {
		return nil, fmt.Errorf("safety: collect: committee file %s and CollectConfig.Epochs: %w", cfg.CommitteeFile, err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &collector{cfg: cfg, log: log.With("component", "safety-collect"), http: &http.Client{Timeout: cfg.RequestTimeout}}

	// 1. Every sidecar's board: identity, certificates, evidence.
	boards := make([]*boardResult, len(cfg.Sidecars))
	var wg sync.WaitGroup
	for i, sc := range cfg.Sidecars {
		wg.Add(1)
		go func() {
			defer wg.Done()
			boards[i] = c.readBoard(ctx, sc)
		}()
	}
	wg.Wait()

	dishonest := dishonestMembers(append([]*qc.Committee{committee}, cfg.Epochs...), cfg.Sidecars, boards)
	info := committeeInfo(committee, dishonest)
	info.SettlementMargin = cf.Margin()
	h := NewHistory(info, cfg.Token)
	for _, e := range cfg.Epochs {
		h.Epochs = append(h.Epochs, committeeInfo(e, dishonest))
	}
	for i, b := range boards {
		name := cfg.Sidecars[i].Name
		for _, cert := range b.certs {
			h.AddCertificate(name, cert)
		}
		for _, ev := range b.evidence {
			h.AddEvidence(name, ev)
			h.AddCertificate(name, ev.First)
			h.AddCertificate(name, ev.Second)
		}
	}

	// 2. Every transaction on every reachable sidecar: status and QC.
	txs := make([]qc.Hash, 0, len(h.Certificates)+len(cfg.TxHashes))
	seen := make(map[qc.Hash]bool)
	addTx := func(t qc.Hash) {
		if !t.IsZero() && !seen[t] {
			seen[t] = true
			txs = append(txs, t)
		}
	}
	for _, t := range cfg.TxHashes {
		addTx(t)
	}
	for i := range h.Certificates {
		addTx(h.Certificates[i].Cert.TxHash)
	}
	if len(txs) > cfg.MaxTxLookups {
		for _, b := range boards {
			b.src.addError(fmt.Errorf("%d transactions found, looking up only the first %d (MaxTxLookups)", len(txs), cfg.MaxTxLookups))
		}
		txs = txs[:cfg.MaxTxLookups]
	}
	claimed := &claimSet{m: make(map[qc.Hash]bool)}
	lookups := make([]*lookupResult, len(cfg.Sidecars))
	for i, sc := range cfg.Sidecars {
		if !boards[i].src.Reachable {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lookups[i] = c.lookupTxs(ctx, sc, boards[i], txs, claimed)
		}()
	}
	wg.Wait()
	for _, t := range txs {
		h.AddStatus(t, NodeStatus{})
	}
	for i, l := range lookups {
		if l == nil {
			continue
		}
		name := cfg.Sidecars[i].Name
		for _, st := range l.statuses {
			h.AddStatus(st.tx, st.NodeStatus)
		}
		for _, cert := range l.certs {
			h.AddCertificate(name, cert)
		}
		for _, q := range l.qcs {
			h.AddQC(name, q)
		}
	}
	honestSidecar := make(map[string]bool, len(cfg.Sidecars))
	for _, sc := range cfg.Sidecars {
		honestSidecar[sc.Name] = sc.Honest
	}
	byHash := make(map[qc.Hash][]int, len(h.QCs))
	for k := range h.QCs {
		byHash[h.QCs[k].QC.Hash] = append(byHash[h.QCs[k].QC.Hash], k)
	}
	for i, l := range lookups {
		if l == nil {
			continue
		}
		// The node reported the qc_hash of a QC fetched from another
		// honest node: record that it holds it too (never on the word of
		// a QC only a Byzantine node served).
		for _, q := range l.alsoHeld {
			for _, k := range byHash[q] {
				if slices.ContainsFunc(h.QCs[k].SeenBy, func(s string) bool { return honestSidecar[s] }) {
					h.QCs[k].SeenBy = addName(h.QCs[k].SeenBy, cfg.Sidecars[i].Name)
				}
			}
		}
	}
	for i := range boards {
		h.AddSource(boards[i].src.Source)
	}

	// 3. Light clients, balances, chain nonces.
	clients := make([]string, 0, len(cfg.LightClientQCs))
	for name := range cfg.LightClientQCs {
		clients = append(clients, name)
	}
	slices.Sort(clients)
	for _, name := range clients {
		raws := cfg.LightClientQCs[name]
		for _, raw := range raws {
			h.AddLightClientQC(name, raw)
		}
		h.AddSource(Source{Name: name, Kind: SourceLightClient, Honest: true, Reachable: true, CollectedAt: time.Now().UTC(), QCs: len(raws)})
	}
	if len(cfg.InitialBalances) > 0 {
		h.InitialBalances = copyBalances(cfg.InitialBalances)
	}
	for token, m := range cfg.InitialFeeBalances {
		for a, b := range m {
			h.setInitialFeeBalance(token, a, b)
		}
	}
	if cfg.ChainRPC != "" {
		src := &sourceAcc{Source: Source{Name: SourceChain, Kind: SourceChain, URL: cfg.ChainRPC, Reachable: true, CollectedAt: time.Now().UTC()}}
		var senders []qc.Address
		have := make(map[qc.Address]bool)
		for _, r := range h.QCs {
			e := r.QC.Effects()
			if e.NonceKey == (qc.NonceKey{}) && !have[e.Sender] {
				have[e.Sender] = true
				senders = append(senders, e.Sender)
			}
		}
		nonces, err := Nonces(ctx, cfg.ChainRPC, senders)
		if err != nil {
			src.Reachable = false
			src.addError(err)
		}
		h.ChainNonces = nonces
		if len(cfg.ChainTxs) > 0 {
			included, err := Included(ctx, cfg.ChainRPC, cfg.ChainTxs)
			if err != nil {
				src.Reachable = false
				src.addError(err)
			}
			h.ChainIncluded = included
		}
		h.AddSource(src.Source)
	}
	h.CollectedAt = time.Now().UTC()
	if err := ctx.Err(); err != nil {
		return h, fmt.Errorf("safety: collect ended early (gathered what it could): %w", err)
	}
	return h, nil
}

// dishonestMembers returns the member keys run as not honest: those of the
// sidecars marked not honest, matched by the id each sidecar's API
// reported, or else by name in any epoch's committee. Members without a
// listed sidecar count as honest, so their double-signs are violations.
func dishonestMembers(committees []*qc.Committee, sidecars []Sidecar, boards []*boardResult) map[qc.ValidatorID]bool {
	dishonest := make(map[qc.ValidatorID]bool)
	for i, s := range sidecars {
		if s.Honest {
			continue
		}
		if id := boards[i].src.ID; id != (qc.ValidatorID{}) {
			dishonest[id] = true
			continue
		}
		for _, c := range committees {
			for _, m := range c.Members() {
				if m.Name == s.Name {
					dishonest[m.ID] = true
				}
			}
		}
	}
	return dishonest
}

// committeeInfo describes committee c for the history, marking the
// dishonest member keys.
func committeeInfo(c *qc.Committee, dishonest map[qc.ValidatorID]bool) CommitteeInfo {
	info := NewCommitteeInfo(c)
	for i := range info.Members {
		info.Members[i].Honest = !dishonest[info.Members[i].ID]
	}
	return info
}

type collector struct {
	cfg  CollectConfig
	log  *slog.Logger
	http *http.Client
}

// sourceAcc accumulates a Source's counters and errors.
type sourceAcc struct {
	mu sync.Mutex
	Source
}

func (s *sourceAcc) addError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ErrorCount++
	if len(s.Errors) < maxSourceErrors {
		s.Errors = append(s.Errors, err.Error())
	}
}

type boardResult struct {
	src      *sourceAcc
	certs    []qc.Certificate
	evidence []qc.Equivocation
	// perTx counts the certificates read per transaction.
	perTx map[qc.Hash]int
}

// httpError is a non-2xx answer.
type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.status, e.body)
}

// getJSON fetches base+path into v, retrying once after a transport error
// or a 5xx answer.
func (c *collector) getJSON(ctx context.Context, base, path string, v any) error {
	var err error
	for attempt := range 2 {
		if attempt > 0 {
			t := time.NewTimer(200 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("GET %s: %w", path, ctx.Err())
			case <-t.C:
			}
		}
		err = c.getOnce(ctx, base, path, v)
		var he *httpError
		if err == nil || ctx.Err() != nil || (errors.As(err, &he) && he.status < 500) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

func (c *collector) getOnce(ctx context.Context, base, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, maxResponseBytes)
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(body, 512))
		var e apiserver.ErrorResponse
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			msg = e.Error.Code + ": " + e.Error.Message
		}
		return &httpError{status: resp.StatusCode, body: msg}
	}
	if err := json.NewDecoder(body).Decode(v); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

func isNotFound(err error) bool {
	var he *httpError
	return errors.As(err, &he) && he.status == http.StatusNotFound
}

// readBoard reads one sidecar's identity, every certificate on its board and
// its evidence.
func (c *collector) readBoard(ctx context.Context, sc Sidecar) *boardResult {
	b := &boardResult{
		src:   &sourceAcc{Source: Source{Name: sc.Name, Kind: SourceSidecar, URL: sc.APIURL, Honest: sc.Honest, CollectedAt: time.Now().UTC()}},
		perTx: make(map[qc.Hash]int),
	}
	var info apiserver.InfoResponse
	if err := c.getJSON(ctx, sc.APIURL, "/api/v1/info", &info); err != nil {
		b.src.addError(err)
	} else if id, err := apiserver.ParseHex(info.ID); err == nil && len(id) == 32 {
		copy(b.src.ID[:], id)
		if info.Name != sc.Name {
			b.src.addError(fmt.Errorf("the sidecar calls itself %q", info.Name))
		}
	}

	// The current board, then the boards of earlier epochs the sidecar
	// still serves (it changes epochs: SPEC §5a).
	boards := []string{""}
	if len(info.BoardEpochs) > 1 {
		for _, e := range info.BoardEpochs[1:] {
			boards = append(boards, fmt.Sprint(uint64(e)))
		}
	}
	for _, epoch := range boards {
		c.pageBoard(ctx, sc, b, epoch)
	}
	b.src.Certs = len(b.certs)
	c.readEvidence(ctx, sc, b)
	if !b.src.Reachable {
		c.log.Warn("sidecar unreachable", "sidecar", sc.Name, "url", sc.APIURL, "errors", b.src.Errors)
	}
	return b
}

// pageBoard reads every certificate of one board of the sidecar (epoch ""
// for the current one) into b.
func (c *collector) pageBoard(ctx context.Context, sc Sidecar, b *boardResult, epoch string) {
	cursor := ""
	for page := 0; ; page++ {
		if page == c.cfg.MaxPages {
			b.src.addError(fmt.Errorf("stopped after %d bulletin pages (MaxPages)", page))
			break
		}
		q := url.Values{"limit": {fmt.Sprint(c.cfg.PageSize)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		if epoch != "" {
			q.Set("epoch", epoch)
		}
		var resp apiserver.BulletinResponse
		if err := c.getJSON(ctx, sc.APIURL, "/api/v1/bulletin?"+q.Encode(), &resp); err != nil {
			b.src.addError(err)
			break
		}
		b.src.Reachable = true
		b.src.Pages++
		for i := range resp.Certificates {
			cert, err := resp.Certificates[i].ToCertificate(fmt.Sprintf("bulletin.certificates[%d]", i))
			if err != nil {
				b.src.addError(err)
				continue
			}
			b.certs = append(b.certs, cert)
			b.perTx[cert.TxHash]++
		}
		if resp.NextCursor == "" {
			break
		}
		if resp.NextCursor == cursor {
			b.src.addError(fmt.Errorf("bulletin cursor %q did not advance", cursor))
			break
		}
		cursor = resp.NextCursor
	}
}

// readEvidence reads the sidecar's equivocation evidence into b.
func (c *collector) readEvidence(ctx context.Context, sc Sidecar, b *boardResult) {
	var ev apiserver.EvidenceResponse
	if err := c.getJSON(ctx, sc.APIURL, "/api/v1/evidence", &ev); err != nil {
		b.src.addError(err)
	} else {
		b.src.Reachable = true
		for i := range ev.Evidence {
			first, err1 := ev.Evidence[i].First.ToCertificate(fmt.Sprintf("evidence[%d].first", i))
			second, err2 := ev.Evidence[i].Second.ToCertificate(fmt.Sprintf("evidence[%d].second", i))
			if err := errors.Join(err1, err2); err != nil {
				b.src.addError(err)
				continue
			}
			b.evidence = append(b.evidence, qc.Equivocation{First: first, Second: second})
		}
		b.src.Evidence = len(b.evidence)
	}
}

// claimSet hands each QC hash to the first honest node that reports it, so
// an identical QC is fetched once.
type claimSet struct {
	mu sync.Mutex
	m  map[qc.Hash]bool
}

func (s *claimSet) claim(h qc.Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[h] {
		return false
	}
	s.m[h] = true
	return true
}

func (s *claimSet) release(h qc.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, h)
}

type txStatus struct {
	tx qc.Hash
	NodeStatus
}

type lookupResult struct {
	mu       sync.Mutex
	statuses []txStatus
	certs    []qc.Certificate
	qcs      []*qc.QC
	alsoHeld []qc.Hash
}

// lookupTxs asks one sidecar for the status of every transaction, and for
// the certificates and QC of those it holds more of than its board listing
// showed.
func (c *collector) lookupTxs(ctx context.Context, sc Sidecar, b *boardResult, txs []qc.Hash, claimed *claimSet) *lookupResult {
	res := &lookupResult{}
	work := make(chan qc.Hash)
	var wg sync.WaitGroup
	for range c.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tx := range work {
				c.lookupTx(ctx, sc, b, tx, claimed, res)
			}
		}()
	}
feed:
	for _, tx := range txs {
		select {
		case work <- tx:
		case <-ctx.Done():
			b.src.addError(fmt.Errorf("transaction lookups: %w", ctx.Err()))
			break feed
		}
	}
	close(work)
	wg.Wait()
	b.src.Statuses = len(res.statuses)
	b.src.QCs = len(res.qcs) + len(res.alsoHeld)
	return res
}

func (c *collector) lookupTx(ctx context.Context, sc Sidecar, b *boardResult, tx qc.Hash, claimed *claimSet, res *lookupResult) {
	var st apiserver.TxStatusResponse
	if err := c.getJSON(ctx, sc.APIURL, "/api/v1/tx/"+tx.Hex()+"/status", &st); err != nil {
		if !isNotFound(err) {
			b.src.addError(err)
		}
		return
	}
	ns := NodeStatus{Node: sc.Name, Stage: st.Stage, BlockHeight: uint64(st.BlockHeight), CertCount: st.CertCount,
		QCUnixMillis: uint64(st.QCUnixMillis), FirstSeenUnixMillis: uint64(st.FirstSeenUnixMillis)}
	if st.QCFormed {
		if err := parseFixed(ns.QCHash[:], st.QCHash, "status.qc_hash"); err != nil {
			b.src.addError(fmt.Errorf("tx %s: %w", tx, err))
		}
	}
	// Fetch the QC unless an honest node already served one with the same
	// hash (a Byzantine node's QCs are always fetched), and certificates
	// the board listing missed (its log is bounded).
	fetchQC := st.QCFormed && (!sc.Honest || claimed.claim(ns.QCHash))
	needCerts := st.CertCount > b.perTx[tx]
	var certs []qc.Certificate
	var q *qc.QC
	if fetchQC || needCerts {
		certs, q = c.txBulletin(ctx, sc, b, tx)
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	res.statuses = append(res.statuses, txStatus{tx: tx, NodeStatus: ns})
	res.certs = append(res.certs, certs...)
	switch {
	case q != nil:
		res.qcs = append(res.qcs, q)
	case st.QCFormed && !fetchQC:
		res.alsoHeld = append(res.alsoHeld, ns.QCHash)
	case fetchQC && sc.Honest:
		claimed.release(ns.QCHash) // let another node serve it
	}
}

// qcOfJSON decodes a QC of the API's JSON form, from its protobuf bytes
// when given: only they carry the QC's epoch.
func qcOfJSON(j *apiserver.JSONQC, field string) (*qc.QC, error) {
	if j.ProtoHex == "" {
		return j.ToQC(field)
	}
	pq, err := j.ToProto(field)
	if err != nil {
		return nil, err
	}
	q, err := pq.ToQC()
	if err != nil {
		return nil, fmt.Errorf("%s.proto_hex: %w", field, err)
	}
	return q, nil
}

// txBulletin reads GET /api/v1/bulletin?tx= : the transaction's certificates
// and QC.
func (c *collector) txBulletin(ctx context.Context, sc Sidecar, b *boardResult, tx qc.Hash) ([]qc.Certificate, *qc.QC) {
	var certs []qc.Certificate
	var q *qc.QC
	cursor := ""
	for page := 0; page < c.cfg.MaxPages; page++ {
		v := url.Values{"tx": {tx.Hex()}, "limit": {fmt.Sprint(c.cfg.PageSize)}}
		if cursor != "" {
			v.Set("cursor", cursor)
		}
		var resp apiserver.BulletinResponse
		if err := c.getJSON(ctx, sc.APIURL, "/api/v1/bulletin?"+v.Encode(), &resp); err != nil {
			b.src.addError(err)
			break
		}
		for i := range resp.Certificates {
			cert, err := resp.Certificates[i].ToCertificate(fmt.Sprintf("bulletin.certificates[%d]", i))
			if err != nil {
				b.src.addError(err)
				continue
			}
			certs = append(certs, cert)
		}
		for i := range resp.QCs {
			if q != nil {
				break
			}
			got, err := qcOfJSON(&resp.QCs[i], fmt.Sprintf("bulletin.qcs[%d]", i))
			if err != nil {
				b.src.addError(fmt.Errorf("tx %s: %w", tx, err))
				continue
			}
			q = got
		}
		if resp.NextCursor == "" || resp.NextCursor == cursor {
			break
		}
		cursor = resp.NextCursor
	}
	return certs, q
}
