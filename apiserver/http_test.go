package apiserver

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	fastpayv1 "github.com/allegro-mesh/allegro/api/fastpayv1"
	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/qc"
)

func baseURL(s *Server) string { return "http://" + s.Addr().String() }

func do(t testing.TB, method, url, body string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func decodeAs[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

// submitBody is the JSON form of testRequest(seq, amount).
func submitBody(seq, amount uint64) string {
	raw := testRequest(seq, amount).Tx.TempoTx.Data
	return fmt.Sprintf(`{"tempo_tx":"0x%x","nonce_seq":"%d","expiry":{"unix_millis":"4000000000000"},`+
		`"intent":{"sender":"%s","recipient":"%s","amount":"%d","asset":"%s"},"client_request_id":"req-%d"}`,
		raw, seq, alice.Hex(), bob.Hex(), amount, testAsset.Hex(), seq)
}

func TestHTTPSubmitRawTx(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f, func(c *Config) { c.MaxBodyBytes = 8 << 10 })
	url := baseURL(s) + "/api/v1/submit-raw-tx"

	code, hdr, b := do(t, "POST", url, submitBody(0, 10), "Content-Type", "application/json")
	if code != http.StatusOK || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("submit: %d %s %s", code, hdr.Get("Content-Type"), b)
	}
	resp := decodeAs[SubmitResponse](t, b)
	h, _ := mustEffects(t, testRequest(0, 10))
	if resp.TxHash != h.Hex() || resp.Certificate == nil || resp.Certificate.Signer.Name != "v0" ||
		resp.Certificate.Signer.ID != f.signers[0].ID().Hex() || resp.Stage != "ACCEPTED" || resp.CertCount != 1 || resp.Quorum != 3 || resp.QCFormed {
		t.Fatalf("submit response %s", b)
	}
	cert, err := resp.Certificate.ToCertificate("certificate")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.committee.VerifyCertificate(&cert); err != nil {
		t.Fatal(err)
	}
	sent, _ := f.last()
	if sent.GetTx().GetClientRequestId() != "req-0" || sent.GetTx().GetTempoTxFormat() != fastpayv1.TempoTxFormat_EVM_OPAQUE_BYTES_V1 ||
		sent.GetTx().GetChainId().GetValue() != testChainID || sent.GetTx().GetOverlay().GetPayment().GetAmount() != 10 {
		t.Fatalf("request passed to the backend: %v", sent)
	}

	// Validation reject → 422; backend trouble → 503.
	code, _, b = do(t, "POST", url, submitBody(1, amountTooMuch))
	if rej := decodeAs[SubmitRejectResponse](t, b).Reject; code != http.StatusUnprocessableEntity || rej.Code != "INSUFFICIENT_FUNDS" || rej.Message == "" {
		t.Fatalf("reject: %d %s", code, b)
	}
	code, hdr, b = do(t, "POST", url, submitBody(1, amountUnavailable))
	if rej := decodeAs[SubmitRejectResponse](t, b).Reject; code != http.StatusServiceUnavailable || rej.Code != "TEMPORARY_UNAVAILABLE" || hdr.Get("Retry-After") == "" {
		t.Fatalf("unavailable: %d %s", code, b)
	}

	// Malformed bodies → 400 naming the field; oversized → 413.
	_, before := f.last()
	for name, c := range map[string]struct {
		body, field string
	}{
		"bad hex":          {strings.Replace(submitBody(2, 1), `"tempo_tx":"0x`, `"tempo_tx":"0xzz`, 1), "tempo_tx"},
		"odd hex":          {strings.Replace(submitBody(2, 1), `"tempo_tx":"0x`, `"tempo_tx":"0x1`, 1), "tempo_tx"},
		"missing tempo_tx": {`{"nonce_seq":"1","expiry":{"unix_millis":"5"}}`, "tempo_tx"},
		"missing nonce":    {`{"tempo_tx":"0x02","expiry":{"unix_millis":"5"}}`, "nonce_seq"},
		"missing expiry":   {`{"tempo_tx":"0x02","nonce_seq":"1"}`, "expiry"},
		"negative nonce":   {`{"tempo_tx":"0x02","nonce_seq":"-1","expiry":{"unix_millis":"5"}}`, "nonce_seq"},
		"unknown field":    {`{"tempo_tx":"0x02","nonce_seq":1,"expiry":{"unix_millis":5},"amout":"1"}`, "amout"},
		"not json":         {`tempo_tx=0x02`, "body"},
		"empty":            {``, "body"},
		"two objects":      {`{} {}`, "body"},
		"bad parent qc":    {`{"tempo_tx":"0x02","nonce_seq":1,"expiry":{"unix_millis":5},"parent_qcs":["0x0102"]}`, "parent_qcs[0]"},
	} {
		code, _, b := do(t, "POST", url, c.body)
		e := decodeAs[ErrorResponse](t, b)
		if code != http.StatusBadRequest || e.Error.Code != "BAD_REQUEST" || !strings.HasPrefix(e.Error.Message, c.field) {
			t.Errorf("%s: %d %s, want 400 about %s", name, code, b, c.field)
		}
	}
	big := `{"tempo_tx":"0x` + strings.Repeat("ab", 8<<10) + `"}`
	code, _, b = do(t, "POST", url, big)
	if e := decodeAs[ErrorResponse](t, b); code != http.StatusRequestEntityTooLarge || e.Error.Code != "BODY_TOO_LARGE" {
		t.Fatalf("oversized body: %d %s", code, b)
	}
	if _, after := f.last(); after != before {
		t.Fatalf("malformed bodies reached the backend %d times", after-before)
	}

	for _, q := range []string{"?wait=cert", "?wait=qc&timeout_ms=abc", "?wait=qc&timeout_ms=0"} {
		if code, _, b := do(t, "POST", url+q, submitBody(3, 1)); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s", q, code, b)
		}
	}
}

func TestHTTPSubmitWaitQC(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f)
	url := baseURL(s) + "/api/v1/submit-raw-tx"

	// No peers sign: the wait times out but the submission succeeded.
	code, _, b := do(t, "POST", url+"?wait=qc&timeout_ms=50", submitBody(0, 10))
	if resp := decodeAs[SubmitResponse](t, b); code != http.StatusOK || !resp.WaitTimedOut || resp.QC != nil || resp.Certificate == nil {
		t.Fatalf("wait without peers: %d %s", code, b)
	}

	f.setPeersSign(true)
	code, _, b = do(t, "POST", url+"?wait=qc&timeout_ms=10000", submitBody(1, 10))
	resp := decodeAs[SubmitResponse](t, b)
	if code != http.StatusOK || resp.QC == nil || !resp.QCFormed || resp.WaitTimedOut || resp.QCHash != resp.QC.QCHash || resp.Stage != "CERTIFIED" {
		t.Fatalf("wait=qc: %d %s", code, b)
	}
	protoBytes, err := ParseHex(resp.QC.ProtoHex)
	if err != nil {
		t.Fatal(err)
	}
	pq, err := ParseQCProto(protoBytes)
	if err != nil {
		t.Fatal(err)
	}
	q, err := pq.ToQC()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.committee.VerifyQC(q); err != nil {
		t.Fatalf("QC from wait=qc does not verify: %v", err)
	}

	// The QC goes back as a parent, once as protobuf hex and once as JSON.
	jq, err := json.Marshal(resp.QC)
	if err != nil {
		t.Fatal(err)
	}
	noProto := *resp.QC
	noProto.ProtoHex = ""
	jqNoProto, _ := json.Marshal(noProto)
	body := strings.TrimSuffix(submitBody(2, 10), "}") +
		fmt.Sprintf(`,"parent_qc_hash":"%s","parent_qcs":["%s",%s,%s]}`, resp.QCHash, resp.QC.ProtoHex, jq, jqNoProto)
	code, _, b = do(t, "POST", url, body)
	if code != http.StatusOK {
		t.Fatalf("child submission: %d %s", code, b)
	}
	sent, _ := f.last()
	if len(sent.GetParentQcs()) != 3 {
		t.Fatalf("backend got %d parent QCs", len(sent.GetParentQcs()))
	}
	for i, p := range sent.GetParentQcs() {
		got, err := p.ToQC()
		if err != nil {
			t.Fatal(err)
		}
		if err := f.committee.VerifyQC(got); err != nil || got.Hash != q.Hash {
			t.Fatalf("parent QC %d: %v", i, err)
		}
	}
	if hex.EncodeToString(sent.GetTx().GetParentQcHash()) != strings.TrimPrefix(resp.QCHash, "0x") {
		t.Fatal("parent_qc_hash not passed on")
	}
}

func TestHTTPTxStatusAndQC(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f)
	base := baseURL(s)
	unknown := qc.Hash{9, 9, 9}

	for _, p := range []string{"/status", "/qc"} {
		if code, _, b := do(t, "GET", base+"/api/v1/tx/"+unknown.Hex()+p, ""); code != http.StatusNotFound || decodeAs[ErrorResponse](t, b).Error.Code != "NOT_FOUND" {
			t.Fatalf("unknown tx %s: %d %s", p, code, b)
		}
		if code, _, b := do(t, "GET", base+"/api/v1/tx/0x1234"+p, ""); code != http.StatusBadRequest {
			t.Fatalf("short hash %s: %d %s", p, code, b)
		}
	}

	req := testRequest(0, 10)
	h, e := mustEffects(t, req)
	if code, _, b := do(t, "POST", base+"/api/v1/submit-raw-tx", submitBody(0, 10)); code != http.StatusOK {
		t.Fatalf("submit: %d %s", code, b)
	}
	code, _, b := do(t, "GET", base+"/api/v1/tx/"+strings.TrimPrefix(h.Hex(), "0x")+"/status", "")
	st := decodeAs[TxStatusResponse](t, b)
	if code != http.StatusOK || st.Stage != "ACCEPTED" || st.CertCount != 1 || st.Quorum != 3 || st.QCFormed ||
		st.Sender != alice.Hex() || st.Certificates[0].Signer.Name != "v0" || st.Stages["ACCEPTED"] == 0 {
		t.Fatalf("status: %d %s", code, b)
	}
	if code, _, b := do(t, "GET", base+"/api/v1/tx/"+h.Hex()+"/qc", ""); code != http.StatusNotFound {
		t.Fatalf("qc before quorum: %d %s", code, b)
	}

	f.board.AddCertificate(f.sign(1, h, e))
	f.board.AddCertificate(f.sign(2, h, e))
	f.board.SetStage(h, fastpayv1.TxLifecycleUpdate_INCLUDED, 12)
	code, _, b = do(t, "GET", base+"/api/v1/tx/"+h.Hex()+"/status", "")
	st = decodeAs[TxStatusResponse](t, b)
	if code != http.StatusOK || st.Stage != "INCLUDED" || st.CertCount != 3 || !st.QCFormed || st.QCHash == "" || st.BlockHeight != 12 ||
		st.Stages["CERTIFIED"] == 0 || st.QCUnixMillis == 0 {
		t.Fatalf("status after quorum: %d %s", code, b)
	}
	if !strings.Contains(string(b), `"block_height":"12"`) {
		t.Fatalf("u64 not a decimal string: %s", b)
	}
	code, _, b = do(t, "GET", base+"/api/v1/tx/"+h.Hex()+"/qc", "")
	jq := decodeAs[JSONQC](t, b)
	if code != http.StatusOK || jq.QCHash != st.QCHash || len(jq.Certs) != 3 || jq.Threshold != 3 || jq.ProtoHex == "" {
		t.Fatalf("qc: %d %s", code, b)
	}
	q, err := jq.ToQC("qc")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.committee.VerifyQC(q); err != nil {
		t.Fatal(err)
	}
}

func TestHTTPNodeEndpoints(t *testing.T) {
	f := newFake(t, 7)
	s := startServer(t, f)
	base := baseURL(s)

	code, _, b := do(t, "GET", base+"/api/v1/committee", "")
	c := decodeAs[CommitteeResponse](t, b)
	if code != http.StatusOK || c.N != 7 || c.F != 2 || c.Quorum != 5 || len(c.Members) != 7 || c.Hash != f.committee.Hash().Hex() || c.ChainID != testChainID {
		t.Fatalf("committee: %d %s", code, b)
	}
	selves := 0
	for _, m := range c.Members {
		if m.Self {
			selves++
			if m.ID != f.signers[0].ID().Hex() {
				t.Fatalf("self is %s", m.Name)
			}
		}
		if m.PeerID == "" || len(m.Addrs) != 1 {
			t.Fatalf("member %+v", m)
		}
	}
	if selves != 1 {
		t.Fatalf("%d members marked self", selves)
	}

	code, _, b = do(t, "GET", base+"/api/v1/info", "")
	info := decodeAs[InfoResponse](t, b)
	if code != http.StatusOK || info.Name != "v0" || info.ID != f.signers[0].ID().Hex() || info.Pubkey != info.ID || len(info.GossipPeers) != 2 || info.ChainID != testChainID {
		t.Fatalf("info: %d %s", code, b)
	}

	code, _, b = do(t, "GET", base+"/api/v1/chain/head", "")
	if head := decodeAs[ChainHeadResponse](t, b); code != http.StatusOK || head.BlockHeight != 4242 || !strings.HasPrefix(head.BlockHash, "0xbeef") {
		t.Fatalf("head: %d %s", code, b)
	}
	if !strings.Contains(string(b), `"block_height":"4242"`) {
		t.Fatalf("head height not a decimal string: %s", b)
	}

	// Equivocation: v3 certifies two transactions for one contention key.
	h1, e1 := mustEffects(t, testRequest(5, 10))
	h2, e2 := mustEffects(t, testRequest(5, 11))
	f.board.AddCertificate(f.sign(3, h1, e1))
	f.board.AddCertificate(f.sign(3, h2, e2))
	code, _, b = do(t, "GET", base+"/api/v1/evidence", "")
	ev := decodeAs[EvidenceResponse](t, b)
	if code != http.StatusOK || len(ev.Evidence) != 1 || ev.Evidence[0].Signer.Name != "v3" || ev.Evidence[0].Key.NonceSeq != 5 ||
		ev.Evidence[0].First.TxHash != h1.Hex() || ev.Evidence[0].Second.TxHash != h2.Hex() {
		t.Fatalf("evidence: %d %s", code, b)
	}

	f.setHeadErr(errors.New("node down"))
	if code, _, b := do(t, "GET", base+"/api/v1/chain/head", ""); code != http.StatusServiceUnavailable || decodeAs[ErrorResponse](t, b).Error.Code != "UNAVAILABLE" {
		t.Fatalf("head with the chain down: %d %s", code, b)
	}
}

func TestHTTPBulletin(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f)
	base := baseURL(s) + "/api/v1/bulletin"

	var hashes []qc.Hash
	for seq := range uint64(3) {
		h, e := mustEffects(t, testRequest(seq, 3))
		hashes = append(hashes, h)
		for i := range 3 {
			f.board.AddCertificate(f.sign(i, h, e))
		}
	}
	code, _, b := do(t, "GET", base+"?tx="+hashes[1].Hex(), "")
	page := decodeAs[BulletinResponse](t, b)
	if code != http.StatusOK || len(page.Certificates) != 3 || len(page.QCs) != 1 || page.QCs[0].TxHash != hashes[1].Hex() || page.NextCursor != "" {
		t.Fatalf("by tx: %d %s", code, b)
	}

	var all int
	cursor := ""
	for range 10 {
		code, _, b := do(t, "GET", base+"?address="+alice.Hex()+"&limit=4&since=0&cursor="+cursor, "")
		page := decodeAs[BulletinResponse](t, b)
		if code != http.StatusOK || len(page.Certificates) > 4 {
			t.Fatalf("page: %d %s", code, b)
		}
		all += len(page.Certificates)
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if all != 9 {
		t.Fatalf("paged %d certificates, want 9", all)
	}

	for _, q := range []string{
		"?tx=0x12", "?address=nothex", "?tx=" + hashes[0].Hex() + "&address=" + alice.Hex(), "?limit=-1", "?since=yesterday", "?cursor=%21%21",
	} {
		if code, _, b := do(t, "GET", base+q, ""); code != http.StatusBadRequest || decodeAs[ErrorResponse](t, b).Error.Message == "" {
			t.Errorf("%s: %d %s, want 400", q, code, b)
		}
	}
}

// sseEvent is one parsed server-sent event.
type sseEvent struct {
	kind, id, data string
}

// readSSE parses events from r into out until r fails.
func readSSE(r *bufio.Reader, out chan<- sseEvent) error {
	var ev sseEvent
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if ev.kind != "" || ev.data != "" {
				out <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
			out <- sseEvent{kind: "comment", data: line}
		case strings.HasPrefix(line, "event: "):
			ev.kind = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = strings.TrimPrefix(line, "data: ")
		}
	}
}

// openSSE connects to the event stream and waits for the subscription.
func openSSE(t *testing.T, url string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan sseEvent, 4096)
	go func() {
		defer close(events)
		_ = readSSE(bufio.NewReaderSize(io.LimitReader(resp.Body, 64<<20), 64<<10), events)
	}()
	select {
	case ev := <-events:
		if ev.kind != "comment" || !strings.Contains(ev.data, "subscribed") {
			t.Fatalf("first SSE item %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("no subscription comment")
	}
	return events
}

func nextEvent(t *testing.T, events <-chan sseEvent, skipComments bool) sseEvent {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("event stream ended")
			}
			if skipComments && ev.kind == "comment" {
				continue
			}
			return ev
		case <-deadline.C:
			t.Fatal("no event within 10 s")
		}
	}
}

func TestHTTPEvents(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f, func(c *Config) { c.HeartbeatInterval = 50 * time.Millisecond })
	h, e := mustEffects(t, testRequest(0, 10))
	other, oe := mustEffects(t, testRequest(1, 10))

	events := openSSE(t, baseURL(s)+"/api/v1/events?tx="+h.Hex())
	f.board.AddCertificate(f.sign(0, other, oe)) // filtered out
	for i := range 3 {
		f.board.AddCertificate(f.sign(i, h, e))
	}
	var kinds []string
	var sawCert, sawQC bool
	for !sawQC {
		ev := nextEvent(t, events, true)
		kinds = append(kinds, ev.kind)
		if ev.id == "" {
			t.Fatalf("event without id: %+v", ev)
		}
		je := decodeAs[JSONEvent](t, []byte(ev.data))
		if je.TxHash != h.Hex() || je.Kind != ev.kind {
			t.Fatalf("event %+v does not match the filter", je)
		}
		switch ev.kind {
		case "certificate":
			sawCert = je.Certificate != nil && je.Sender == alice.Hex()
		case "qc":
			sawQC = je.QC != nil && je.QC.ProtoHex != "" && len(je.QC.Certs) == 3
		}
	}
	if !sawCert || kinds[0] != "certificate" {
		t.Fatalf("events %v", kinds)
	}
	if ev := nextEvent(t, events, true); ev.kind != "lifecycle" || !strings.Contains(ev.data, `"stage":"CERTIFIED"`) {
		t.Fatalf("after the qc: %+v", ev)
	}
	// Heartbeats keep flowing on an idle stream.
	if ev := nextEvent(t, events, false); ev.kind != "comment" || !strings.Contains(ev.data, "heartbeat") {
		t.Fatalf("idle stream: %+v", ev)
	}

	// Address filter: bob is the recipient.
	byAddr := openSSE(t, baseURL(s)+"/api/v1/events?address="+bob.Hex())
	h3, e3 := mustEffects(t, testRequest(3, 10))
	f.board.AddCertificate(f.sign(1, h3, e3))
	if ev := nextEvent(t, byAddr, true); ev.kind != "certificate" || !strings.Contains(ev.data, h3.Hex()) {
		t.Fatalf("by address: %+v", ev)
	}

	if code, _, b := do(t, "GET", baseURL(s)+"/api/v1/events?tx=0x12", ""); code != http.StatusBadRequest {
		t.Fatalf("bad filter: %d %s", code, b)
	}
}

func TestHTTPEventsReportsDrops(t *testing.T) {
	f := newFake(t, 4, func(c *bulletin.Config) { c.SubscriberBuffer = 1 })
	s := startServer(t, f)
	events := openSSE(t, baseURL(s)+"/api/v1/events")

	deadline := time.Now().Add(15 * time.Second)
	var seq uint64
	for time.Now().Before(deadline) {
		// A burst far faster than the stream writes overflows the buffer.
		for range 200 {
			seq++
			h, e := mustEffects(t, testRequest(seq, 1))
			f.board.AddCertificate(f.sign(0, h, e))
		}
		wait := time.NewTimer(200 * time.Millisecond)
	drain:
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatal("stream ended")
				}
				if ev.kind == "dropped" {
					wait.Stop()
					var d struct {
						Dropped uint64 `json:"dropped"`
					}
					if err := json.Unmarshal([]byte(ev.data), &d); err != nil || d.Dropped == 0 {
						t.Fatalf("dropped event %+v", ev)
					}
					return
				}
			case <-wait.C:
				break drain
			}
		}
	}
	t.Fatal("a lagging client was never told about dropped events")
}

func TestHealthAndMetrics(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f)
	base := baseURL(s)

	code, _, b := do(t, "GET", base+"/healthz", "")
	if hr := decodeAs[HealthResponse](t, b); code != http.StatusOK || hr.Status != "ok" || hr.ChainHead == nil {
		t.Fatalf("healthz: %d %s", code, b)
	}
	f.setHeadErr(errors.New("dial tcp 127.0.0.1:8545: connection refused"))
	code, _, b = do(t, "GET", base+"/healthz", "")
	if hr := decodeAs[HealthResponse](t, b); code != http.StatusServiceUnavailable || hr.Status == "ok" || hr.Error == nil || !strings.Contains(hr.Error.Message, "connection refused") {
		t.Fatalf("healthz with the chain down: %d %s", code, b)
	}

	// One gRPC call so the gRPC counters exist too.
	if _, err := grpcClient(t, s).GetValidatorInfo(testCtx(t), &fastpayv1.GetValidatorInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	f.board.AddCertificate(f.sign(1, qc.Hash{1}, qc.Effects{}))
	code, _, b = do(t, "GET", base+"/metrics", "")
	text := string(b)
	for _, want := range []string{
		`allegro_api_requests_total{code="503",protocol="http",route="/healthz"} 1`,
		`allegro_api_requests_total{code="OK",protocol="grpc",route="GetValidatorInfo"} 1`,
		"allegro_api_request_duration_seconds_bucket",
		"allegro_bulletin_certificates_total", // the backend's gatherer
	} {
		if code != http.StatusOK || !strings.Contains(text, want) {
			t.Errorf("metrics lack %q (%d)", want, code)
		}
	}
}

func TestHTTPRoutingCORSAndRecovery(t *testing.T) {
	f := newFake(t, 4)
	cfg := DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	s, err := New(cfg, f, quiet)
	if err != nil {
		t.Fatal(err)
	}
	s.Handle("/boom", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("kaboom") }))
	s.Handle("GET /dashboard/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<html>dashboard</html>")
	}))
	startBuilt(t, s)
	base := baseURL(s)

	if code, _, b := do(t, "GET", base+"/boom", ""); code != http.StatusInternalServerError || decodeAs[ErrorResponse](t, b).Error.Code != "INTERNAL" {
		t.Fatalf("panic: %d %s", code, b)
	}
	if code, _, b := do(t, "GET", base+"/dashboard/index.html", ""); code != http.StatusOK || !strings.Contains(string(b), "dashboard") {
		t.Fatalf("mounted route: %d %s", code, b)
	}
	if code, _, b := do(t, "GET", base+"/nope", ""); code != http.StatusNotFound || decodeAs[ErrorResponse](t, b).Error.Code != "NOT_FOUND" {
		t.Fatalf("unknown path: %d %s", code, b)
	}
	code, hdr, b := do(t, "GET", base+"/api/v1/submit-raw-tx", "")
	if code != http.StatusMethodNotAllowed || !strings.Contains(hdr.Get("Allow"), "POST") || decodeAs[ErrorResponse](t, b).Error.Code != "METHOD_NOT_ALLOWED" {
		t.Fatalf("wrong method: %d %s", code, b)
	}

	code, hdr, _ = do(t, "OPTIONS", base+"/api/v1/submit-raw-tx", "",
		"Origin", "http://localhost:5173", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type")
	if code != http.StatusNoContent || hdr.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(hdr.Get("Access-Control-Allow-Methods"), "POST") ||
		hdr.Get("Access-Control-Allow-Headers") != "content-type" {
		t.Fatalf("preflight: %d %v", code, hdr)
	}
	if _, hdr, _ := do(t, "GET", base+"/api/v1/info", "", "Origin", "http://localhost:5173"); hdr.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("CORS on GET: %v", hdr)
	}
	if code, _, _ := do(t, "GET", base+"/api/v1/info", ""); code != http.StatusOK {
		t.Fatal("server unusable after a panic")
	}
}

func TestCORSRestrictedOrigins(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f, func(c *Config) { c.AllowedOrigins = []string{"https://dash.example"} })
	url := baseURL(s) + "/api/v1/info"

	code, hdr, _ := do(t, "OPTIONS", url, "", "Origin", "https://dash.example", "Access-Control-Request-Method", "GET")
	if code != http.StatusNoContent || hdr.Get("Access-Control-Allow-Origin") != "https://dash.example" || hdr.Get("Vary") != "Origin" {
		t.Fatalf("allowed origin: %d %v", code, hdr)
	}
	code, hdr, _ = do(t, "OPTIONS", url, "", "Origin", "https://evil.example", "Access-Control-Request-Method", "GET")
	if code != http.StatusForbidden || hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("other origin: %d %v", code, hdr)
	}
	if _, hdr, _ := do(t, "GET", url, "", "Origin", "https://evil.example"); hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("other origin on GET: %v", hdr)
	}
}

// With HTTP2JSON the JSON API also answers over cleartext HTTP/2 on the
// gRPC port (by default such connections are gRPC's; see TestProtocolSplit).
func TestHTTPOverH2C(t *testing.T) {
	f := newFake(t, 4)
	s := startServer(t, f, func(c *Config) { c.HTTP2JSON = true })
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
	t.Cleanup(client.CloseIdleConnections) // before Stop: no 1 s GOAWAY wait
	req, _ := http.NewRequestWithContext(testCtx(t), "GET", baseURL(s)+"/healthz", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("h2c healthz: %d over %s", resp.StatusCode, resp.Proto)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for field, mutate := range map[string]func(*Config){
		"listen_addr":            func(c *Config) { c.ListenAddr = "" },
		"listen_addr ":           func(c *Config) { c.ListenAddr = "no-port" },
		"metrics_listen_addr":    func(c *Config) { c.MetricsListenAddr = "9464" },
		"metrics_listen_addr ":   func(c *Config) { c.MetricsListenAddr = c.ListenAddr },
		"max_body_bytes":         func(c *Config) { c.MaxBodyBytes = 0 },
		"stream_timeout":         func(c *Config) { c.StreamTimeout = 0 },
		"read_header_timeout":    func(c *Config) { c.ReadHeaderTimeout = -1 },
		"idle_timeout":           func(c *Config) { c.IdleTimeout = 0 },
		"body_read_timeout":      func(c *Config) { c.BodyReadTimeout = 0 },
		"handshake_timeout":      func(c *Config) { c.HandshakeTimeout = -time.Second },
		"keepalive_time":         func(c *Config) { c.KeepaliveTime = 500 * time.Millisecond },
		"keepalive_timeout":      func(c *Config) { c.KeepaliveTimeout = 0 },
		"keepalive_min_time":     func(c *Config) { c.KeepaliveMinTime = 0 },
		"ready_max_head_age":     func(c *Config) { c.ReadyMaxHeadAge = 0 },
		"max_conns":              func(c *Config) { c.MaxConns = 0 },
		"max_conns_per_ip":       func(c *Config) { c.MaxConnsPerIP = c.MaxConns + 1 },
		"max_conns_per_ip ":      func(c *Config) { c.MaxConnsPerIP = 0 },
		"max_concurrent_streams": func(c *Config) { c.MaxConcurrentStreams = 0 },
		"max_header_bytes":       func(c *Config) { c.MaxHeaderBytes = 100 },
		"heartbeat_interval":     func(c *Config) { c.HeartbeatInterval = 0 },
		"default_wait_timeout":   func(c *Config) { c.DefaultWaitTimeout = 3 * time.Minute },
		"allowed_origins":        func(c *Config) { c.AllowedOrigins = []string{""} },
	} {
		c := DefaultConfig()
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), strings.TrimSpace(field)) {
			t.Errorf("%s: %v", field, err)
		}
	}
	if _, err := New(DefaultConfig(), nil, nil); err == nil {
		t.Fatal("New accepted a nil backend")
	}
}

// TestProtocolSplit: whichever way gRPC is served, one port answers gRPC
// and HTTP/1.1 JSON; a connection that never says anything holds up
// nobody; with the split (the default) cleartext HTTP/2 JSON is refused by
// gRPC's transport instead of being answered.
func TestProtocolSplit(t *testing.T) {
	for _, http2JSON := range []bool{false, true} {
		t.Run(fmt.Sprintf("HTTP2JSON=%v", http2JSON), func(t *testing.T) {
			f := newFake(t, 4)
			s := startServer(t, f, func(c *Config) { c.HTTP2JSON = http2JSON })

			silent, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer silent.Close()

			if _, err := grpcClient(t, s).SubmitFastPay(testCtx(t), testRequest(0, 10)); err != nil {
				t.Fatalf("gRPC: %v", err)
			}
			if code, _, body := do(t, "GET", baseURL(s)+"/healthz", ""); code != http.StatusOK {
				t.Fatalf("HTTP/1.1 healthz: %d %s", code, body)
			}
			var protocols http.Protocols
			protocols.SetUnencryptedHTTP2(true)
			client := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
			defer client.CloseIdleConnections()
			req, _ := http.NewRequestWithContext(testCtx(t), "GET", baseURL(s)+"/healthz", nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := http2JSON; (resp.StatusCode == http.StatusOK) != want {
				t.Fatalf("h2c JSON with HTTP2JSON=%v: status %d", http2JSON, resp.StatusCode)
			}
		})
	}
}

// serverWithTakenConnection starts a server on a channel-fed listener (its
// Close leaves undelivered connections, like a socket shared with a later
// server: node's apiListener), hands it one in-memory connection, which
// returns once the server has taken it, and returns the server and the
// client end. The caller stops the server.
func serverWithTakenConnection(t *testing.T, mutate func(*Config)) (*Server, net.Conn) {
	t.Helper()
	ln := newChanListener(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1})
	cfg := DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Listen = func(context.Context, string, string) (net.Listener, error) { return ln, nil }
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg, newFake(t, 4), quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close() })
	if !ln.deliver(server) {
		t.Fatal("the server closed its listener instead of taking the connection")
	}
	return s, client
}

// TestStopAnswersConnectionTakenAtStop: a connection the server took from
// its socket just before Stop, whose client speaks only after Stop began,
// is answered rather than closed unanswered. With a socket that outlives
// the server (an epoch boundary) the client would otherwise see EOF on a
// fresh connection, which HTTP clients do not retry.
func TestStopAnswersConnectionTakenAtStop(t *testing.T) {
	s, client := serverWithTakenConnection(t, nil)
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- s.Stop(ctx)
	}()
	// Give a Stop that does not wait for the connection time to finish,
	// so the request below meets the stopped server; one that waits does
	// so for freshGrace, far longer than this.
	select {
	case err := <-stopped:
		stopped <- err
	case <-time.After(100 * time.Millisecond):
	}
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Write([]byte("GET /healthz HTTP/1.1\r\nHost: sidecar\r\n\r\n")); err != nil {
		t.Fatalf("write the request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(client), nil)
	if err != nil {
		t.Fatalf("no answer to the connection taken at the stop: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d, want 200", resp.StatusCode)
	}
	client.Close()
	if err := <-stopped; err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// TestStopNotHeldBySilentConnection: a connection taken before Stop whose
// client never speaks holds Stop for the grace only, not for the
// handshake timeout, so silent clients cannot hold an epoch's swap.
func TestStopNotHeldBySilentConnection(t *testing.T) {
	s, _ := serverWithTakenConnection(t, func(c *Config) { c.HandshakeTimeout = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// The handshake timeout is a minute: a Stop that waited for the
	// silent client would take that long.
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("Stop took %s with a silent connection open", took)
	}
}
