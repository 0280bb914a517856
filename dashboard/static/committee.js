// Allegro sidecar dashboard: what the committee view computes from the
// sidecar's JSON (docs/api.md), kept apart from the page so that it can be
// tested without a browser (dashboard/committeeview_test.go runs it under
// node). Pure functions: no DOM, no requests. Keys are compared in lower
// case; u64 values arrive as decimal strings.
"use strict";

globalThis.allegroCommittee = (() => {
  const key = (k) => String(k || "").toLowerCase();
  const num = (v) => (v === undefined || v === null || v === "" ? null : Number(v));

  // bySigner orders seats by their first signer's name (numbers in names
  // by value: v2 before v10), then seats without a signer by key.
  function bySigner(a, b) {
    const na = a.members.length ? a.members[0].name || "" : null;
    const nb = b.members.length ? b.members[0].name || "" : null;
    if (na !== null && nb !== null && na !== nb) return na.localeCompare(nb, "en", { numeric: true });
    if ((na === null) !== (nb === null)) return na === null ? 1 : -1;
    return a.seat < b.seat ? -1 : a.seat > b.seat ? 1 : 0;
  }

  // seatsOf lists a committee's seats, each with the members (sidecar
  // keys) that sign for it, in signer name order. A committee from the
  // chain lists its seats (a seat whose consensus key bound no sidecar key
  // has no member and cannot sign); in a committee file each member is its
  // own seat.
  function seatsOf(c) {
    const bySeat = new Map();
    const seats = c && c.seats && c.seats.length ? c.seats : ((c && c.members) || []).map((m) => m.seat || m.id);
    for (const s of seats) bySeat.set(key(s), []);
    for (const m of (c && c.members) || []) {
      const s = key(m.seat || m.id);
      if (!bySeat.has(s)) bySeat.set(s, []);
      bySeat.get(s).push(m);
    }
    return [...bySeat.entries()]
      .map(([seat, members]) => ({ seat, members: members.slice().sort((a, b) => (key(a.id) < key(b.id) ? -1 : 1)) }))
      .sort(bySigner);
  }

  // committeeDiff compares the committee of an epoch with the next one's,
  // seat by seat: each seat of either is one row, in seatsOf's order, whose
  // change is "joins" (only in next), "leaves" (only in cur), "rebound"
  // (in both, signed for by other sidecar keys) or "stays"; members are the
  // row's signers in next (in cur for a seat that leaves), previous its
  // signers in cur. The counts sum the rows by change.
  function committeeDiff(cur, next) {
    const before = new Map(seatsOf(cur).map((s) => [s.seat, s.members]));
    const after = new Map(seatsOf(next).map((s) => [s.seat, s.members]));
    const ids = (ms) => ms.map((m) => key(m.id)).join(",");
    const rows = [];
    for (const [seat, members] of after) {
      const prev = before.get(seat);
      let change = "joins";
      if (prev) change = ids(prev) === ids(members) ? "stays" : "rebound";
      rows.push({ seat, change, members, previous: prev || [] });
    }
    for (const [seat, prev] of before) {
      if (!after.has(seat)) rows.push({ seat, change: "leaves", members: prev, previous: prev });
    }
    rows.sort(bySigner);
    const counts = { joins: 0, leaves: 0, rebound: 0, stays: 0 };
    for (const r of rows) counts[r.change]++;
    return { rows, counts, changed: counts.joins + counts.leaves + counts.rebound > 0 };
  }

  // epochProgress says where the chain head is in the committee's epoch:
  // null on a network without epochs (no epoch_length). head is the newest
  // head the page knows (or null); the answer's own head_height counts
  // when newer. into is how many of the epoch's last epoch_length blocks
  // before next_epoch_block the head has passed (the network's first epoch
  // may be longer); nextKnowable: the head reached the block whose state
  // decides the next committee.
  function epochProgress(c, head) {
    const length = num(c && c.epoch_length);
    if (!length) return null;
    const epoch = num(c.epoch);
    const next = num(c.next_epoch_block);
    const committeeBlock = num(c.next_committee_block);
    let h = num(c.head_height);
    if (head !== null && head !== undefined && (h === null || head > h)) h = head;
    const out = { epoch, nextEpoch: epoch + 1, length, next, committeeBlock, head: h, left: null, into: null, nextKnowable: false };
    if (h === null) return out;
    out.left = Math.max(0, next - h);
    out.into = Math.min(length, Math.max(0, h - (next - length)));
    out.nextKnowable = h >= committeeBlock;
    return out;
  }

  // bindingRows describes each binding the sidecar holds against the
  // committee of the current epoch, sorted by consensus key then first
  // epoch. status: "signs" (its sidecar key is the seat's member now),
  // "pending" (first_epoch after the current epoch), "superseded" (a later
  // binding of the key with first_epoch ≤ the epoch exists), "unseated"
  // (its consensus key is not in the committee's validator set) or
  // "unused" (seated, in effect by its epoch, yet not a member: the
  // committee's derivation refused it). member: the committee member of
  // its sidecar key, if any; self: its sidecar key is selfID.
  function bindingRows(bindings, c, selfID) {
    const epoch = num(c && c.epoch) || 0;
    const seats = new Set(seatsOf(c).map((s) => s.seat));
    const members = new Map(((c && c.members) || []).map((m) => [key(m.id), m]));
    const latest = new Map(); // consensus key -> largest first_epoch ≤ epoch
    for (const b of bindings || []) {
      const fe = num(b.first_epoch);
      const ck = key(b.consensus_key);
      if (fe <= epoch && (!latest.has(ck) || fe > latest.get(ck))) latest.set(ck, fe);
    }
    const rows = (bindings || []).map((b) => {
      const ck = key(b.consensus_key);
      const sk = key(b.sidecar_key);
      const fe = num(b.first_epoch);
      const m = members.get(sk);
      let status;
      if (m && key(m.seat || m.id) === ck) status = "signs";
      else if (fe > epoch) status = "pending";
      else if (fe < latest.get(ck)) status = "superseded";
      else if (!seats.has(ck)) status = "unseated";
      else status = "unused";
      return { consensusKey: ck, sidecarKey: sk, firstEpoch: fe, status, member: m || null, self: !!selfID && sk === key(selfID) };
    });
    rows.sort((a, b) => (a.consensusKey < b.consensusKey ? -1 : a.consensusKey > b.consensusKey ? 1 : a.firstEpoch - b.firstEpoch));
    return rows;
  }

  return { seatsOf, committeeDiff, epochProgress, bindingRows };
})();
