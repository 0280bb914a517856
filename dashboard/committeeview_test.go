package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// jsDriver runs one function of committee.js per call: the calls come as
// a JSON array of {fn, args} on standard input, the answers go out as a
// JSON array.
const jsDriver = `"use strict";
require("./committee.js");
const fs = require("fs");
const calls = JSON.parse(fs.readFileSync(0, "utf8"));
const out = calls.map((c) => globalThis.allegroCommittee[c.fn](...c.args));
process.stdout.write(JSON.stringify(out));
`

// JSCall is one call of a committee.js function.
type JSCall struct {
	Fn   string `json:"fn"`
	Args []any  `json:"args"`
}

// RunCommitteeJS runs calls of the page's committee.js (the embedded file)
// under node and returns each answer; the test is skipped when node is
// not on PATH.
func RunCommitteeJS(t testing.TB, calls []JSCall) []json.RawMessage {
	t.Helper()
	nodeExe, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not on PATH: the committee view's functions run only in a browser here")
	}
	src, err := staticFiles.ReadFile("static/committee.js")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, text := range map[string][]byte{"committee.js": src, "driver.js": []byte(jsDriver)} {
		if err := os.WriteFile(filepath.Join(dir, name), text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in, err := json.Marshal(calls)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeExe, filepath.Join(dir, "driver.js"))
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var answers []json.RawMessage
	if err := json.Unmarshal(out, &answers); err != nil || len(answers) != len(calls) {
		t.Fatalf("node answered %d of %d calls (%v): %s", len(answers), len(calls), err, out)
	}
	return answers
}

// Committees as the API serves them (only the fields the view reads).
type jsMember struct {
	Name      string `json:"name"`
	ID        string `json:"id"`
	Seat      string `json:"seat"`
	Connected bool   `json:"connected,omitempty"`
	Self      bool   `json:"self,omitempty"`
}

type jsCommittee struct {
	Epoch   string     `json:"epoch"`
	N       int        `json:"n"`
	Members []jsMember `json:"members"`
	Seats   []string   `json:"seats,omitempty"`
}

// member of seat s signing with sidecar key id.
func member(name, id, seat string) jsMember { return jsMember{Name: name, ID: id, Seat: seat} }

// TestCommitteeDiff: joining, leaving and rebound seats between two
// committees, for committees from the chain and from a file.
func TestCommitteeDiff(t *testing.T) {
	// Keys are short stand-ins for 0x hex; the view compares them as text.
	file := jsCommittee{Epoch: "3", N: 3, Members: []jsMember{member("a", "0xaa", "0xaa"), member("b", "0xbb", "0xbb"), member("c", "0xcc", "0xcc")}}
	chain := jsCommittee{Epoch: "3", N: 4, Seats: []string{"0x01", "0x02", "0x03", "0x04"},
		Members: []jsMember{member("v1", "0xa1", "0x01"), member("v2", "0xa2", "0x02"), member("v3", "0xa3", "0x03"), member("v4", "0xa4", "0x04")}}
	with := func(c jsCommittee, seats []string, members ...jsMember) jsCommittee {
		c.Epoch, c.Seats, c.Members, c.N = "4", seats, members, len(seats)
		if seats == nil {
			c.N = len(members)
		}
		return c
	}
	for _, tc := range []struct {
		name      string
		cur, next jsCommittee
		// want: "seat change signers" per row in seat order.
		want    []string
		changed bool
	}{
		{name: "a committee file, unchanged", cur: file, next: with(file, nil, file.Members...),
			want: []string{"0xaa stays a", "0xbb stays b", "0xcc stays c"}},
		{name: "chain: one joins", cur: chain, next: with(chain, []string{"0x01", "0x02", "0x03", "0x04", "0x05"},
			append(append([]jsMember(nil), chain.Members...), member("v5", "0xa5", "0x05"))...), changed: true,
			want: []string{"0x01 stays v1", "0x02 stays v2", "0x03 stays v3", "0x04 stays v4", "0x05 joins v5"}},
		{name: "chain: one leaves, one joins unbound", cur: chain, next: with(chain, []string{"0x02", "0x03", "0x04", "0x09"},
			chain.Members[1:]...), changed: true,
			want: []string{"0x01 leaves v1", "0x02 stays v2", "0x03 stays v3", "0x04 stays v4", "0x09 joins "}},
		{name: "chain: a seat binds a new sidecar key", cur: chain, next: with(chain, chain.Seats,
			member("v1", "0xa1", "0x01"), member("v2b", "0xb2", "0x02"), member("v3", "0xa3", "0x03"), member("v4", "0xa4", "0x04")), changed: true,
			want: []string{"0x01 stays v1", "0x02 rebound v2b", "0x03 stays v3", "0x04 stays v4"}},
		{name: "rows in signer name order, unbound seats last", cur: jsCommittee{Epoch: "3", N: 3, Seats: []string{"0x01", "0x02", "0x03"},
			Members: []jsMember{member("v10", "0xa1", "0x01"), member("v2", "0xa2", "0x02")}},
			next: with(chain, []string{"0x01", "0x02", "0x03"}, member("v10", "0xa1", "0x01"), member("v2", "0xa2", "0x02")),
			want: []string{"0x02 stays v2", "0x01 stays v10", "0x03 stays "}},
		{name: "keys compared without case", cur: chain, next: with(chain, []string{"0X01", "0x02", "0x03", "0x04"},
			member("v1", "0xA1", "0X01"), chain.Members[1], chain.Members[2], chain.Members[3]),
			want: []string{"0x01 stays v1", "0x02 stays v2", "0x03 stays v3", "0x04 stays v4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ans := RunCommitteeJS(t, []JSCall{{Fn: "committeeDiff", Args: []any{tc.cur, tc.next}}})
			var d struct {
				Rows []struct {
					Seat    string     `json:"seat"`
					Change  string     `json:"change"`
					Members []jsMember `json:"members"`
				} `json:"rows"`
				Changed bool `json:"changed"`
			}
			if err := json.Unmarshal(ans[0], &d); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range d.Rows {
				line := r.Seat + " " + r.Change + " "
				for i, m := range r.Members {
					if i > 0 {
						line += ","
					}
					line += m.Name
				}
				got = append(got, line)
			}
			if !reflect.DeepEqual(got, tc.want) || d.Changed != tc.changed {
				t.Errorf("diff rows %q changed %v, want %q %v", got, d.Changed, tc.want, tc.changed)
			}
		})
	}
}

// TestEpochProgress: where the head is in the epoch, from the committee's
// schedule and the newest head the page knows.
func TestEpochProgress(t *testing.T) {
	sched := func(epoch, next, head string) map[string]any {
		c := map[string]any{"epoch": epoch, "epoch_length": "20", "next_epoch_block": next}
		if n, ok := map[string]int{"80": 79, "40": 39}[next]; ok {
			c["next_committee_block"] = n
		}
		if head != "" {
			c["head_height"] = head
		}
		return c
	}
	type progress struct {
		Head         *int `json:"head"`
		Left         *int `json:"left"`
		Into         *int `json:"into"`
		NextKnowable bool `json:"nextKnowable"`
		NextEpoch    int  `json:"nextEpoch"`
	}
	i := func(v int) *int { return &v }
	for _, tc := range []struct {
		name      string
		committee any
		pageHead  any // null or a number
		want      *progress
	}{
		{name: "no epochs", committee: map[string]any{"epoch": "1", "n": 4}, want: nil},
		{name: "inside the epoch", committee: sched("3", "80", "65"), want: &progress{Head: i(65), Left: i(15), Into: i(5), NextEpoch: 4}},
		{name: "the page's newer head counts", committee: sched("3", "80", "65"), pageHead: 79,
			want: &progress{Head: i(79), Left: i(1), Into: i(19), NextKnowable: true, NextEpoch: 4}},
		{name: "an older page head does not", committee: sched("3", "80", "65"), pageHead: 61, want: &progress{Head: i(65), Left: i(15), Into: i(5), NextEpoch: 4}},
		{name: "boundary passed", committee: sched("3", "80", "83"), want: &progress{Head: i(83), Left: i(0), Into: i(20), NextKnowable: true, NextEpoch: 4}},
		{name: "a long first epoch", committee: sched("1", "40", "5"), want: &progress{Head: i(5), Left: i(35), Into: i(0), NextEpoch: 2}},
		{name: "head unknown", committee: sched("3", "80", ""), want: &progress{NextEpoch: 4}},
		{name: "only the page's head", committee: sched("3", "80", ""), pageHead: 70, want: &progress{Head: i(70), Left: i(10), Into: i(10), NextEpoch: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ans := RunCommitteeJS(t, []JSCall{{Fn: "epochProgress", Args: []any{tc.committee, tc.pageHead}}})
			var got *progress
			if err := json.Unmarshal(ans[0], &got); err != nil {
				t.Fatal(err)
			}
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(tc.want)
			if !bytes.Equal(gotJSON, wantJSON) {
				t.Errorf("progress %s, want %s (all: %s)", gotJSON, wantJSON, ans[0])
			}
		})
	}
}

// TestBindingRows: each binding's status against the current committee.
func TestBindingRows(t *testing.T) {
	c := jsCommittee{Epoch: "5", N: 3, Seats: []string{"0x01", "0x02", "0x03"},
		Members: []jsMember{member("v1", "0xa1", "0x01"), member("v2", "0xb2", "0x02")}} // 0x03 unbound
	binding := func(ck, sk string, first int) map[string]any {
		return map[string]any{"consensus_key": ck, "sidecar_key": sk, "first_epoch": first}
	}
	bindings := []any{
		binding("0x02", "0xb2", 4),  // signs
		binding("0x01", "0xA1", 0),  // signs (keys compared without case)
		binding("0x02", "0xa2", 0),  // superseded by 0xb2 from epoch 4
		binding("0x02", "0xc2", 7),  // pending
		binding("0x04", "0xa4", 0),  // not a seat
		binding("0x03", "0xa3", 5),  // a seat, in effect by its epoch, not a member: refused
		binding("0x05", "0xa5", 6),  // pending, not a seat yet
		binding("0x03", "0xa3x", 2), // superseded
	}
	ans := RunCommitteeJS(t, []JSCall{{Fn: "bindingRows", Args: []any{bindings, c, "0xB2"}}})
	var rows []struct {
		ConsensusKey string    `json:"consensusKey"`
		SidecarKey   string    `json:"sidecarKey"`
		FirstEpoch   int       `json:"firstEpoch"`
		Status       string    `json:"status"`
		Member       *jsMember `json:"member"`
		Self         bool      `json:"self"`
	}
	if err := json.Unmarshal(ans[0], &rows); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"0x01 0xa1 0 signs v1", "0x02 0xa2 0 superseded", "0x02 0xb2 4 signs v2 self", "0x02 0xc2 7 pending",
		"0x03 0xa3x 2 superseded", "0x03 0xa3 5 unused", "0x04 0xa4 0 unseated", "0x05 0xa5 6 pending",
	}
	var got []string
	for _, r := range rows {
		line := r.ConsensusKey + " " + r.SidecarKey + " " + itoa(r.FirstEpoch) + " " + r.Status
		if r.Member != nil {
			line += " " + r.Member.Name
		}
		if r.Self {
			line += " self"
		}
		got = append(got, line)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("binding rows:\n got %q\nwant %q", got, want)
	}
}

func itoa(v int) string { b, _ := json.Marshal(v); return string(b) }
