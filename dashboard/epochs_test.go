package dashboard_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/allegro-mesh/allegro/apiserver"
	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/dashboard"
	"github.com/allegro-mesh/allegro/devnet"
	"github.com/allegro-mesh/allegro/internal/testkit"
	"github.com/allegro-mesh/allegro/qc"
)

// epochLength of the devnet below: 6 s epochs at a block every 200 ms,
// long enough for the page to show a boundary's change for a while.
const epochLength = 30

// TestCommitteeViewWithEpochs runs an in-process devnet whose committees
// come from its dev chain (four validators and a spare) and checks what the
// committee view reads: the epoch's schedule and head, the seats with their
// bound sidecar keys and links, the bindings, an epoch's committee that the
// chain cannot tell yet (404), and, after the spare is added on chain, the
// epoch it joins in against the one before (the view's diff, run under node
// when it is on PATH). With a Chromium it also opens the page before the
// spare joins and checks the view after.
func TestCommitteeViewWithEpochs(t *testing.T) {
	if testing.Short() {
		t.Skip("a dev chain and five sidecars")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), BlockPeriod: 200 * time.Millisecond, EpochLength: epochLength, Spares: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.Stop(stopCtx); err != nil {
			t.Errorf("stop devnet: %v", err)
		}
	}()
	testkit.Eventually(t, 30*time.Second, "four validators running", func() bool { return len(d.Nodes()) == 4 })
	// A runner keeps its API address across epochs.
	base := "http://" + d.Runners[0].Node().API.Addr().String()
	spare := keysOf(t, d, 4)

	var info apiserver.InfoResponse
	getJSON(ctx, t, base+"/api/v1/info", &info)

	// This epoch: its schedule, where the head is, and four seats, each
	// with its bound sidecar key, linked to this sidecar.
	c := waitCommittee(ctx, t, base, "the committee of 4 seats, every member linked", func(c apiserver.CommitteeResponse) bool {
		for _, m := range c.Members {
			if !m.Self && !m.Connected {
				return false
			}
		}
		return len(c.Seats) == 4
	})
	checkSchedule(t, c)
	checkSeats(t, c, info.ID, 4)
	if slices.Contains(c.Seats, spare.consensus) {
		t.Fatalf("the spare's seat %s is in the committee before it is on chain", spare.consensus)
	}

	// The bindings: one per validator, the spare's included.
	var bs apiserver.BindingsResponse
	getJSON(ctx, t, base+"/api/v1/bindings", &bs)
	if len(bs.Bindings) != 5 {
		t.Fatalf("%d bindings, want 5: %+v", len(bs.Bindings), bs.Bindings)
	}
	for _, m := range c.Members {
		if !slices.ContainsFunc(bs.Bindings, func(b apiserver.JSONBinding) bool {
			return b.ConsensusKey == m.Seat && b.SidecarKey == m.ID && b.FirstEpoch <= c.Epoch
		}) {
			t.Errorf("no binding in effect of seat %s to member %s (%s)", m.Seat, m.Name, m.ID)
		}
	}
	if !slices.ContainsFunc(bs.Bindings, func(b apiserver.JSONBinding) bool {
		return b.ConsensusKey == spare.consensus && b.SidecarKey == spare.sidecar
	}) {
		t.Errorf("the spare's binding %s → %s is not listed: %+v", spare.consensus, spare.sidecar, bs.Bindings)
	}

	// Two epochs on, the chain cannot tell the committee yet (its block is
	// more than an epoch ahead): "not yet known".
	now := waitCommittee(ctx, t, base, "the current committee", nil)
	later := uint64(now.Epoch) + 2
	code, body := tryGet(ctx, base+fmt.Sprintf("/api/v1/committee?epoch=%d", later))
	after := waitCommittee(ctx, t, base, "the current committee", nil)
	if after.HeadHeight != nil && uint64(*after.HeadHeight) < later*epochLength-1 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if code != http.StatusNotFound || json.Unmarshal(body, &e) != nil || e.Error.Code != "NOT_FOUND" {
			t.Errorf("the committee of epoch %d with the head at %d: %d %s, want 404 NOT_FOUND", later, *after.HeadHeight, code, body)
		}
	} else {
		t.Logf("the head passed block %d meanwhile: the committee of epoch %d may be known (%d)", later*epochLength-1, later, code)
	}

	// The page, with Chromium: this epoch and its committee.
	var bctx context.Context
	if exe := findChromium(); exe != "" {
		bctx = openPage(ctx, t, exe, base+"/")
		poll(t, bctx, "the committee view with 4 seats", 30*time.Second, `document.querySelectorAll("#seats tbody tr").length`,
			func(n int) bool { return n == 4 })
	} else if os.Getenv("CI") != "" {
		t.Fatal("chromium not found; on CI .ci/run installs Debian's chromium")
	} else {
		t.Log("chromium not found: the page is not opened (apt-get install chromium to run that part)")
	}

	// The chain's owner adds the spare: it joins at an epoch whose
	// committee block comes after; the view compares that epoch's committee
	// with the one before.
	addValidator(ctx, t, d, spare.consensusKey)
	joined := waitCommittee(ctx, t, base, "the spare in the committee", func(c apiserver.CommitteeResponse) bool {
		return slices.Contains(c.Seats, spare.consensus)
	})
	checkSchedule(t, joined)
	checkSeats(t, joined, info.ID, 5)
	prevURL := base + fmt.Sprintf("/api/v1/committee?epoch=%d", uint64(joined.Epoch)-1)
	code, prevBody := tryGet(ctx, prevURL)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", prevURL, code, prevBody)
	}
	var prev apiserver.CommitteeResponse
	if err := json.Unmarshal(prevBody, &prev); err != nil {
		t.Fatal(err)
	}
	if uint64(prev.Epoch) != uint64(joined.Epoch)-1 || len(prev.Seats) != 4 || prev.N != 4 || slices.Contains(prev.Seats, spare.consensus) {
		t.Fatalf("the committee before the spare joined: %s", prevBody)
	}
	if prev.EpochLength != epochLength || prev.NextEpochBlock != joined.Epoch*epochLength {
		t.Errorf("epoch %d's schedule: length %d, next epoch at %d", prev.Epoch, prev.EpochLength, prev.NextEpochBlock)
	}
	for _, m := range prev.Members {
		if !slices.Contains(prev.Seats, m.Seat) || m.ID == "" || m.Name == "" {
			t.Errorf("epoch %d's member %+v", prev.Epoch, m)
		}
	}
	i := slices.IndexFunc(joined.Members, func(m apiserver.JSONMember) bool { return m.Seat == spare.consensus })
	if i < 0 || joined.Members[i].ID != spare.sidecar || joined.Members[i].Name == "" {
		t.Fatalf("the spare's seat %s has no member signing with its sidecar key %s: %+v", spare.consensus, spare.sidecar, joined.Members)
	}
	// The spare's own sidecar now serves its page: it is "this node" there.
	testkit.Eventually(t, 30*time.Second, "the spare's node running", func() bool { return d.Runners[4].Node() != nil })
	spareBase := "http://" + d.Runners[4].Node().API.Addr().String()
	own := waitCommittee(ctx, t, spareBase, "the spare's committee", func(c apiserver.CommitteeResponse) bool { return c.Epoch >= joined.Epoch })
	if k := slices.IndexFunc(own.Members, func(m apiserver.JSONMember) bool { return m.Self }); k < 0 || own.Members[k].Seat != spare.consensus {
		t.Errorf("the spare's sidecar does not mark its own seat %s: %+v", spare.consensus, own.Members)
	}

	t.Run("diff", func(t *testing.T) {
		_, curBody := tryGet(ctx, base+fmt.Sprintf("/api/v1/committee?epoch=%d", joined.Epoch))
		ans := dashboard.RunCommitteeJS(t, []dashboard.JSCall{{Fn: "committeeDiff", Args: []any{json.RawMessage(prevBody), json.RawMessage(curBody)}}})
		var diff struct {
			Rows []struct {
				Seat    string                 `json:"seat"`
				Change  string                 `json:"change"`
				Members []apiserver.JSONMember `json:"members"`
			} `json:"rows"`
			Counts map[string]int `json:"counts"`
		}
		if err := json.Unmarshal(ans[0], &diff); err != nil {
			t.Fatal(err)
		}
		if diff.Counts["joins"] != 1 || diff.Counts["leaves"] != 0 || diff.Counts["rebound"] != 0 || diff.Counts["stays"] != 4 {
			t.Fatalf("diff of epochs %d → %d: %s", prev.Epoch, joined.Epoch, ans[0])
		}
		for _, r := range diff.Rows {
			if r.Change == "joins" && (r.Seat != spare.consensus || len(r.Members) != 1 || r.Members[0].ID != spare.sidecar) {
				t.Fatalf("joining row %+v, want the spare's seat %s signed by %s", r, spare.consensus, spare.sidecar)
			}
		}
	})

	if bctx != nil {
		checkEpochPage(t, bctx, joined)
	}
}

// checkEpochPage checks the committee view of a sidecar on the epoch
// devnet once the spare joined in epoch joined.
func checkEpochPage(t *testing.T, bctx context.Context, joined apiserver.CommitteeResponse) {
	type view struct {
		Epochs   string   `json:"epochs"`
		Epoch    string   `json:"epoch"`
		Left     string   `json:"left"`
		LeftText string   `json:"leftText"`
		Seats    int      `json:"seats"`
		Self     int      `json:"self"`
		Next     string   `json:"next"`
		Fixed    bool     `json:"fixed"`
		Bindings []string `json:"bindings"`
		Joins    []string `json:"joins"`
		Change   string   `json:"change"`
		Text     string   `json:"text"`
	}
	v := poll(t, bctx, "the committee view with 5 seats and 5 bindings", 30*time.Second, `(() => {
		const q = (s) => document.querySelectorAll(s);
		return { epochs: document.getElementById("epochs").dataset.epochs || "", epoch: document.getElementById("epoch-number").textContent,
			left: document.getElementById("epoch-left").dataset.left || "", leftText: document.getElementById("epoch-left").textContent,
			seats: q("#seats tbody tr").length, self: q('#seats tbody tr[data-self="yes"]').length,
			next: document.getElementById("next-summary").textContent, fixed: !document.getElementById("epoch-fixed").hidden,
			bindings: [...q("#bindings tbody tr")].map((r) => r.dataset.status), joins: [...q('#seats tr[data-change="joins"]')].map((r) => r.dataset.seat),
			change: document.getElementById("cur-change").textContent, text: document.getElementById("epochs").innerText };
	})()`, func(v view) bool {
		return v.Epochs == "yes" && v.Seats == 5 && len(v.Bindings) == 5 && v.Left != "" && v.Change != ""
	})
	if v.Self != 1 || v.Fixed || !strings.Contains(v.Next, "epoch ") || !strings.Contains(v.LeftText, "head #") {
		t.Errorf("committee view: %+v", v)
	}
	for _, s := range v.Bindings {
		if s != "signs" {
			t.Errorf("binding statuses %v, want every binding signing", v.Bindings)
			break
		}
	}
	// The boundary the spare joined at shows for that epoch only.
	switch {
	case v.Epoch == fmt.Sprint(joined.Epoch):
		if len(v.Joins) != 1 || !strings.Contains(v.Change, fmt.Sprintf("since epoch %d: joined ", joined.Epoch-1)) {
			t.Errorf("in epoch %s, the spare's joining: seats %v, %q", v.Epoch, v.Joins, v.Change)
		}
		screenshot(t, bctx, filepath.Join(artifacts(t), "dashboard-epoch-joined.png"))
	case len(v.Joins) != 0 || !strings.HasPrefix(v.Change, "unchanged since epoch"):
		t.Errorf("in epoch %s, after the spare joined in %d: joining seats %v, %q", v.Epoch, joined.Epoch, v.Joins, v.Change)
	default:
		t.Logf("the page showed epoch %s, after the one the spare joined in (%d)", v.Epoch, joined.Epoch)
	}
	for _, want := range []string{"30 blocks each", "5 seats · quorum 4", "the chain's validator set", "this node", "connected"} {
		if !strings.Contains(v.Text, want) {
			t.Errorf("the committee view does not show %q:\n%s", want, v.Text)
		}
	}
	screenshot(t, bctx, filepath.Join(artifacts(t), "dashboard-epochs.png"))
}

// waitCommittee polls base's current committee until ok accepts it (nil:
// any); the API is away for a moment while a sidecar changes epochs.
func waitCommittee(ctx context.Context, t *testing.T, base, what string, ok func(apiserver.CommitteeResponse) bool) apiserver.CommitteeResponse {
	t.Helper()
	var lastBody []byte
	deadline := time.Now().Add(time.Minute)
	for {
		code, body := tryGet(ctx, base+"/api/v1/committee")
		if code == http.StatusOK {
			var c apiserver.CommitteeResponse
			if err := json.Unmarshal(body, &c); err != nil {
				t.Fatalf("committee: %v: %s", err, body)
			}
			lastBody = body
			if ok == nil || ok(c) {
				return c
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("waiting for %s: last committee %s", what, lastBody)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// checkSchedule: the committee of an epoch-changing network says its epoch
// length, where the epoch ends and where the head is.
func checkSchedule(t *testing.T, c apiserver.CommitteeResponse) {
	t.Helper()
	next := (uint64(c.Epoch) + 1) * epochLength
	if c.EpochLength != epochLength || uint64(c.NextEpochBlock) != next || uint64(c.NextCommitteeBlock) != next-1 {
		t.Fatalf("epoch %d: length %d, next epoch block %d, next committee block %d", c.Epoch, c.EpochLength, c.NextEpochBlock, c.NextCommitteeBlock)
	}
	if c.HeadHeight == nil || c.BlocksLeft == nil {
		t.Fatalf("epoch %d: no head (%v) or blocks left (%v)", c.Epoch, c.HeadHeight, c.BlocksLeft)
	}
	head := uint64(*c.HeadHeight)
	if want := next - min(head, next); uint64(*c.BlocksLeft) != want {
		t.Errorf("head %d, %d blocks left to %d, want %d", head, *c.BlocksLeft, next, want)
	}
	// A sidecar runs epoch e once its head reached e's first block (the
	// network's first epoch, 1 here, starts at genesis).
	if c.Epoch > 1 && head < uint64(c.Epoch)*epochLength {
		t.Errorf("epoch %d with the head at %d, before its first block", c.Epoch, head)
	}
}

// checkSeats: n seats from the chain, each member signing for one of them
// with its own sidecar key; exactly one is this sidecar.
func checkSeats(t *testing.T, c apiserver.CommitteeResponse, selfID string, n int) {
	t.Helper()
	if len(c.Seats) != n || c.N != n || len(c.Members) != n || c.Quorum != qc.QuorumFor(n) {
		t.Fatalf("epoch %d: %d seats, n %d, %d members, quorum %d; want %d seats", c.Epoch, len(c.Seats), c.N, len(c.Members), c.Quorum, n)
	}
	selves := 0
	for _, m := range c.Members {
		if !slices.Contains(c.Seats, m.Seat) || m.Seat == m.ID || m.Name == "" || m.PeerID == "" {
			t.Errorf("epoch %d: member %+v (seats %v)", c.Epoch, m, c.Seats)
		}
		if m.Self {
			selves++
			if m.ID != selfID {
				t.Errorf("epoch %d: member %s marked self, this sidecar is %s", c.Epoch, m.ID, selfID)
			}
		}
	}
	if selves != 1 {
		t.Errorf("epoch %d: %d members marked self", c.Epoch, selves)
	}
}

// validatorKeys are a devnet validator's keys in the API's spelling.
type validatorKeys struct {
	consensus, sidecar string
	consensusKey       ed25519.PrivateKey
}

func keysOf(t *testing.T, d *devnet.Devnet, i int) validatorKeys {
	t.Helper()
	dir := filepath.Join(d.Config.Dir, fmt.Sprintf("validator-%d", i))
	_, ck, err := committee.LoadKeyFile(filepath.Join(dir, "consensus.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, sk, err := committee.LoadKeyFile(filepath.Join(dir, "validator.key"))
	if err != nil {
		t.Fatal(err)
	}
	return validatorKeys{consensus: qc.ValidatorID(ck.Public().(ed25519.PublicKey)).Hex(),
		sidecar: qc.ValidatorID(sk.Public().(ed25519.PublicKey)).Hex(), consensusKey: ck}
}

// addValidator adds a consensus key to the dev chain's validator set, as
// its owner.
func addValidator(ctx context.Context, t *testing.T, d *devnet.Devnet, key ed25519.PrivateKey) {
	t.Helper()
	if err := d.AddValidator(ctx, [32]byte(key.Public().(ed25519.PublicKey))); err != nil {
		t.Fatal(err)
	}
}

// tryGet fetches u; code 0 when no answer came (a sidecar between epochs).
func tryGet(ctx context.Context, u string) (int, []byte) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil
	}
	return resp.StatusCode, b
}

// openPage starts a Chromium on page and fails the test, when it ends, on
// requests outside the page's origin or uncaught JavaScript exceptions.
func openPage(ctx context.Context, t *testing.T, exe, page string) context.Context {
	t.Helper()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1366, 900))...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	watchPage(t, bctx, page)
	// The sidecar's API is away for a moment at each epoch change: try a
	// few times.
	var err error
	for range 20 {
		if err = chromedp.Do(bctx, chromedp.Navigate(page)); err == nil {
			return bctx
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("open %s: %v", page, ctx.Err())
		}
	}
	t.Fatalf("open %s: %v", page, err)
	return nil
}
