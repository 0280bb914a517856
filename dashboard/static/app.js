// Allegro sidecar dashboard. Plain JavaScript, no framework and no external
// requests: it reads this sidecar's JSON API and its server-sent events
// (docs/api.md). u64 values arrive as decimal strings.
"use strict";

(() => {
  const MAX_TXS = 40;          // payments kept in the feed
  const MAX_ALERTS = 50;       // evidence and failures kept
  const TICK_MS = 1000;        // poll period of the chain head
  const STREAM_GRACE_MS = 5000; // an event stream may reconnect this long before the banner shows
  const STAGES = ["QUEUED_ONCHAIN", "INCLUDED", "FINALIZED"];

  const $ = (id) => document.getElementById(id);
  const cv = globalThis.allegroCommittee; // committee.js

  const state = {
    info: null,
    committee: null,
    head: null,              // {height, at}
    txs: new Map(),          // tx hash -> payment (see newTx)
    dirty: new Set(),        // tx hashes to re-render
    names: new Map(),        // lower-case address -> demo account name
    mesh: null,              // previous /api/v1/mesh snapshot, for rates
    evidence: new Map(),     // key -> equivocation
    failures: [],            // settlement failures, newest first
    reachable: null,         // null before the first request
    streamOpen: false,
    streamDownSince: Date.now(),
    resyncWanted: true,
    devWallet: null,         // null unknown, false off, true on
    walletHeight: -1,        // block height of the balances shown
    scoring: null,           // score parameters from /api/v1/mesh
    expanded: new Set(),     // members whose score breakdown is open
    next: null,              // {epoch, committee, error}: the next epoch's committee, once asked
    prev: null,              // {epoch, committee}: the previous epoch's (committee null: not known)
    bindings: null,          // null unknown, false not served (no epochs from the chain), else the list
    tick: 0,
  };

  // ---------- helpers ----------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else if (k === "title") e.title = v;
      else e[k] = v;
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  const short = (h) => (h && h.length > 14 ? h.slice(0, 8) + "…" + h.slice(-4) : h || "");
  const nameOf = (addr) => (addr ? state.names.get(addr.toLowerCase()) || short(addr) : "?");

  function dollars(units) {
    if (units === undefined || units === null) return "";
    const u = BigInt(units);
    const whole = u / 1000000n;
    const frac = (u % 1000000n).toString().padStart(6, "0").replace(/0+$/, "");
    return "$" + whole.toString() + "." + (frac.length < 2 ? frac.padEnd(2, "0") : frac);
  }

  function clock(unixMs) {
    const d = new Date(unixMs);
    return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  // memberNames lists the committee's validators by name.
  function memberNames() {
    return state.committee ? state.committee.members.map((m) => m.name).sort() : [];
  }

  function since(ms) {
    if (ms < 0) ms = 0;
    return ms < 1000 ? "+" + ms.toFixed(ms < 10 ? 1 : 0) + " ms" : "+" + (ms / 1000).toFixed(2) + " s";
  }

  // ---------- reachability ----------

  function setReachable(ok) {
    if (ok === false && state.reachable !== false) state.resyncWanted = true;
    state.reachable = ok;
    renderConn();
  }

  function renderConn() {
    const streamOK = state.streamOpen || Date.now() - state.streamDownSince < STREAM_GRACE_MS;
    const down = state.reachable === false || !streamOK;
    $("banner").hidden = !down;
    document.body.classList.toggle("offline", down);
    const pill = $("conn");
    if (down) {
      pill.textContent = "unreachable";
      pill.className = "pill bad";
    } else if (state.streamOpen) {
      pill.textContent = "live";
      pill.className = "pill ok";
    } else {
      pill.textContent = "connecting";
      pill.className = "pill";
    }
  }

  // api fetches a JSON document; a network failure marks the sidecar
  // unreachable, any HTTP answer marks it reachable.
  async function api(path, { method = "GET", body, timeout = 5000 } = {}) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeout);
    let res;
    try {
      res = await fetch(path, {
        method, signal: ctl.signal, cache: "no-store",
        headers: body ? { "Content-Type": "application/json" } : {},
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch (e) {
      setReachable(false);
      throw new Error("sidecar unreachable");
    } finally {
      clearTimeout(timer);
    }
    const doc = await res.json().catch(() => null);
    // A gateway error without the API's JSON body comes from a proxy in
    // front of a sidecar that is not answering.
    const gateway = !doc && (res.status === 502 || res.status === 503 || res.status === 504);
    setReachable(!gateway);
    if (!res.ok) {
      const msg = (doc && ((doc.error && doc.error.message) || (doc.reject && doc.reject.code + ": " + doc.reject.message))) ||
        res.status + " " + res.statusText;
      const err = new Error(msg);
      err.status = res.status;
      throw err;
    }
    return doc;
  }

  // ---------- payments ----------

  function newTx(hash, at) {
    return {
      hash, first: at, sender: "", recipient: "", amount: null,
      certs: new Map(),     // signer name -> unix ms
      qcAt: 0, qcHash: "", qcHeight: null,
      stages: {},           // stage -> {at, height}
      failure: "",
      statusAsked: false,   // a status request was made (fillIn)
    };
  }

  function txFor(hash, at) {
    let tx = state.txs.get(hash);
    if (!tx) {
      tx = newTx(hash, at);
      state.txs.set(hash, tx);
      prune();
    } else if (at && at < tx.first) {
      tx.first = at;
    }
    return tx;
  }

  function prune() {
    if (state.txs.size <= MAX_TXS) return;
    const old = [...state.txs.values()].sort((a, b) => a.first - b.first);
    for (const tx of old.slice(0, state.txs.size - MAX_TXS)) {
      state.txs.delete(tx.hash);
      const card = document.querySelector(`.tx[data-tx="${tx.hash}"]`);
      if (card) card.remove();
    }
  }

  function addCert(tx, cert, at) {
    const eff = cert.effects || {};
    tx.sender = tx.sender || eff.sender || "";
    tx.recipient = tx.recipient || eff.recipient || "";
    if (tx.amount === null && eff.amount !== undefined) tx.amount = eff.amount;
    const name = cert.signer && cert.signer.name;
    if (name && !tx.certs.has(name)) tx.certs.set(name, at);
  }

  function touch(tx) {
    state.dirty.add(tx.hash);
    scheduleRender();
  }

  // fillIn asks for the status of a payment first heard of by a late event
  // (its certificates came before the page or the stream did).
  function fillIn(tx) {
    if (tx.certs.size > 0 || tx.statusAsked) return;
    tx.statusAsked = true;
    refreshStatus(tx).catch(() => { tx.statusAsked = false; });
  }

  function onCertificate(d) {
    walletEvent(d);
    const at = Number(d.unix_millis);
    const tx = txFor(d.tx_hash, at);
    tx.sender = tx.sender || d.sender || "";
    tx.recipient = tx.recipient || d.recipient || "";
    if (d.certificate) addCert(tx, d.certificate, at);
    touch(tx);
  }

  // walletEvent refreshes the balances when an event moves a demo
  // account's money (its pending debits and credits).
  function walletEvent(d) {
    if (!state.devWallet) return;
    for (const a of [d.sender, d.recipient]) if (a && state.names.has(a.toLowerCase())) return scheduleWallet();
  }

  function onQC(d) {
    walletEvent(d);
    const at = Number(d.unix_millis);
    const tx = txFor(d.tx_hash, at);
    if (d.qc) {
      tx.qcHash = d.qc.qc_hash;
      for (const c of d.qc.certs || []) addCert(tx, c, at);
    }
    if (!tx.qcAt) {
      tx.qcAt = at;
      // The head read right after the QC: the QC formed at this height or
      // earlier, so "QC at #h, included at #h+1" is never overstated.
      tx.qcHeight = state.head ? state.head.height : null;
      refreshHead().then(() => {
        if (state.head) tx.qcHeight = state.head.height;
        touch(tx);
      }, () => {});
    }
    touch(tx);
  }

  function onLifecycle(d) {
    walletEvent(d);
    const at = Number(d.unix_millis);
    const tx = txFor(d.tx_hash, at);
    tx.sender = tx.sender || d.sender || "";
    tx.recipient = tx.recipient || d.recipient || "";
    if (STAGES.includes(d.stage) && !tx.stages[d.stage]) {
      tx.stages[d.stage] = { at, height: Number(d.block_height || 0) };
    }
    if (Number(d.block_height) > 0) showHead(Number(d.block_height), false); // a block the poll has not seen yet
    if (d.stage === "CERTIFIED" && !tx.qcAt) tx.qcAt = at;
    fillIn(tx);
    touch(tx);
  }

  function onEquivocation(d) {
    const e = d.evidence;
    if (!e) return;
    addEvidence(e);
    renderAlerts();
  }

  function addEvidence(e) {
    const key = e.signer.id + "/" + e.key.sender + "/" + e.key.nonce_key + "/" + e.key.nonce_seq;
    if (!state.evidence.has(key)) state.evidence.set(key, e);
  }

  function onSettlementFailure(d) {
    const tx = txFor(d.tx_hash, Number(d.unix_millis));
    tx.failure = d.reason || "settlement failed";
    fillIn(tx);
    state.failures.unshift({ tx: d.tx_hash, reason: tx.failure, at: Number(d.unix_millis) });
    state.failures.length = Math.min(state.failures.length, MAX_ALERTS);
    touch(tx);
    renderAlerts();
  }

  // stageOf names the furthest stage a payment reached.
  function stageOf(tx) {
    for (let i = STAGES.length - 1; i >= 0; i--) if (tx.stages[STAGES[i]]) return STAGES[i];
    return tx.qcAt ? "CERTIFIED" : "ACCEPTED";
  }

  // ---------- rendering the feed ----------

  let renderPending = false;
  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(() => {
      renderPending = false;
      renderFeed();
    });
  }

  function renderFeed() {
    const feed = $("feed");
    for (const hash of state.dirty) {
      const tx = state.txs.get(hash);
      if (!tx) continue;
      const card = renderTx(tx);
      const old = feed.querySelector(`.tx[data-tx="${hash}"]`);
      if (old) old.replaceWith(card);
      else feed.prepend(card);
    }
    state.dirty.clear();
    // Newest first.
    const cards = [...feed.querySelectorAll(".tx")];
    const sorted = [...cards].sort((a, b) => Number(b.dataset.first) - Number(a.dataset.first));
    if (sorted.some((c, i) => c !== cards[i])) for (const c of sorted) feed.append(c);
    $("feed-empty").hidden = cards.length > 0;
  }

  function renderTx(tx) {
    const stage = stageOf(tx);
    const quorum = state.committee ? state.committee.quorum : 0;
    const members = memberNames();
    for (const name of tx.certs.keys()) if (!members.includes(name)) members.push(name);

    const chips = members.map((name) => {
      const at = tx.certs.get(name);
      return el("span", { class: "chip" + (at !== undefined ? " on" : "") },
        name, at !== undefined ? el("small", {}, " " + since(at - tx.first)) : null);
    });
    const count = tx.certs.size;
    const quorumText = quorum ? `${count}/${members.length} signed · quorum ${quorum}` : `${count} signed`;

    const step = (label, done, detail, cls) =>
      el("li", { class: (done ? "done" : "") + (cls ? " " + cls : "") }, label, detail ? el("small", {}, detail) : null);
    const height = (h) => (h || h === 0 ? "#" + h : "");
    const st = (name) => tx.stages[name];
    const stageDetail = (name) => {
      const s = st(name);
      if (!s) return "";
      return [s.height ? "block " + height(s.height) : "", since(s.at - tx.first)].filter(Boolean).join(" · ");
    };

    const card = el("article", {
      class: "tx stage-" + stage + (tx.failure ? " failed" : ""),
      "data-tx": tx.hash, "data-first": String(tx.first), "data-stage": stage, "data-qc": tx.qcAt ? "yes" : "no",
    },
      el("div", { class: "tx-top" },
        el("span", { class: "parties" }, el("b", {}, nameOf(tx.sender)), " → ", el("b", {}, nameOf(tx.recipient))),
        el("span", { class: "amount" }, dollars(tx.amount)),
        el("span", { class: "hash mono", title: tx.hash }, short(tx.hash)),
        el("span", { class: "badge b-" + stage }, stage)),
      el("div", { class: "certs" }, ...chips, el("span", { class: "quorum" + (tx.qcAt ? " met" : "") }, quorumText)),
      el("ol", { class: "track" },
        step("signed", true, clock(tx.first)),
        step("QC", !!tx.qcAt, tx.qcAt ? [since(tx.qcAt - tx.first), tx.qcHeight !== null ? "at head " + height(tx.qcHeight) : ""].filter(Boolean).join(" · ") : "", "qc"),
        step("queued on chain", !!st("QUEUED_ONCHAIN"), stageDetail("QUEUED_ONCHAIN")),
        step("included", !!st("INCLUDED"), stageDetail("INCLUDED")),
        step("finalized", !!st("FINALIZED"), stageDetail("FINALIZED"))),
      tx.failure ? el("p", { class: "failure" }, "settlement failure: " + tx.failure) : null);
    return card;
  }

  // ---------- alerts ----------

  function renderAlerts() {
    const ul = $("alerts");
    ul.replaceChildren();
    for (const e of state.evidence.values()) {
      ul.append(el("li", { class: "bad" },
        el("b", {}, "equivocation"), ` by ${e.signer.name || short(e.signer.id)}: sender ${nameOf(e.key.sender)} nonce ${e.key.nonce_seq} — `,
        el("span", { class: "mono" }, short(e.first.tx_hash)), " vs ", el("span", { class: "mono" }, short(e.second.tx_hash))));
    }
    for (const f of state.failures) {
      ul.append(el("li", { class: "warn" }, el("b", {}, "settlement failure"), " ",
        el("span", { class: "mono" }, short(f.tx)), ": " + f.reason));
    }
    if (!ul.children.length) ul.append(el("li", { class: "muted" }, "none"));
  }

  // ---------- committee, mesh, head ----------

  // showHead displays the chain head; a block height from an event only
  // moves it forward, the polled head is authoritative.
  function showHead(height, polled) {
    if (state.head && (polled ? height === state.head.height : height <= state.head.height)) return;
    state.head = { height, at: Date.now() };
    const b = $("head-height");
    b.textContent = "#" + height;
    b.classList.remove("flash");
    void b.offsetWidth; // restart the animation
    b.classList.add("flash");
    scheduleWallet(); // the balances follow the head
    epochHead();
  }

  async function refreshHead() {
    try {
      const h = await api("/api/v1/chain/head");
      showHead(Number(h.block_height), true);
    } catch (e) {
      if (e.status) $("head-height").textContent = "unavailable";
      throw e;
    }
  }

  async function refreshInfo() {
    const info = await api("/api/v1/info");
    state.info = info;
    $("node-name").textContent = info.name;
    $("node-meta").textContent = `chain ${info.chain_id} · epoch ${info.epoch}`;
    document.title = `${info.name} · Allegro mesh`;
  }

  async function refreshCommittee() {
    const c = await api("/api/v1/committee");
    const changed = !state.committee || state.committee.epoch !== c.epoch;
    state.committee = c;
    if (c.head_height) showHead(Number(c.head_height), false); // the answer's head may be newer than the polled one
    $("quorum").textContent = `${c.n} validators · quorum ${c.quorum} · f = ${c.f}`;
    if (state.info) $("node-meta").textContent = `chain ${state.info.chain_id} · epoch ${c.epoch}`;
    renderEpoch();
    if (c.epoch_length) {
      refreshNext().catch(() => {});
      refreshPrev().catch(() => {});
      if (changed) refreshBindings().catch(() => {});
    }
  }

  // ---------- epochs: the committee of this epoch and the next ----------

  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const isSelf = (m) => !!m.self || (!!state.info && String(m.id).toLowerCase() === String(state.info.id).toLowerCase());

  // renderEpoch shows the epoch, where the chain head is in it, and the
  // committees; on a network without epochs only that its committee is
  // fixed (its members are in the committee & mesh table).
  function renderEpoch() {
    const c = state.committee;
    if (!c) return;
    const p = cv.epochProgress(c, state.head ? state.head.height : null);
    $("epoch-number").textContent = c.epoch;
    $("epochs").dataset.epochs = p ? "yes" : "no";
    $("epoch-fixed").hidden = !!p;
    $("epoch-where").hidden = !p;
    $("epoch-view").hidden = !p;
    if (!p) {
      $("epoch-summary").textContent = "fixed committee";
      $("epoch-fixed").textContent = `This network has no epochs: its committee is fixed by the committee file (${plural(c.n, "validator")}, ` +
        `quorum ${c.quorum}) and does not follow the chain. Its members and their links are under Committee & mesh.`;
      return;
    }
    $("epoch-summary").textContent = `${p.length} blocks each · epoch ${p.nextEpoch} from block #${p.next}`;
    renderProgress(p);
    renderSeats(c);
    renderNext(p);
    renderBindings();
  }

  // renderProgress shows the blocks left before the next epoch's first.
  function renderProgress(p) {
    const bar = $("epoch-bar");
    const left = $("epoch-left");
    if (p.head === null) {
      bar.removeAttribute("value"); // indeterminate
      left.textContent = "chain head unknown";
      delete left.dataset.left;
      return;
    }
    bar.max = p.length;
    bar.value = p.into;
    left.dataset.left = String(p.left);
    left.textContent = p.left > 0
      ? `head #${p.head}: ${plural(p.left, "block")} left in epoch ${p.epoch}; epoch ${p.nextEpoch} starts at block #${p.next}`
      : `head #${p.head}: block #${p.next} reached, the committee of epoch ${p.nextEpoch} takes over`;
  }

  // epochHead follows a new chain head: the progress, and the next
  // committee as soon as the chain can tell it.
  function epochHead() {
    const c = state.committee;
    if (!c || !c.epoch_length) return;
    const p = cv.epochProgress(c, state.head.height);
    renderProgress(p);
    const n = state.next;
    if (p.nextKnowable && !(n && n.committee && n.epoch === String(p.nextEpoch))) refreshNext().catch(() => {});
  }

  // sidecarCell names the members signing for a seat, or says it has none.
  function sidecarCell(members) {
    if (!members.length) {
      return el("td", { class: "warn", title: "its consensus key bound no sidecar key: the seat counts in n but cannot sign" }, "no binding");
    }
    const parts = [];
    members.forEach((m, i) => {
      if (i) parts.push(el("br"));
      parts.push(m.name, " ", el("span", { class: "mono muted", title: "sidecar key " + m.id }, short(m.id)),
        isSelf(m) ? el("span", { class: "tag" }, "this node") : null);
    });
    return el("td", {}, ...parts);
  }

  function renderSeats(c) {
    const fromChain = !!(c.seats && c.seats.length);
    $("cur-summary").textContent = `${plural(c.n, "seat")} · quorum ${c.quorum} · ` +
      (fromChain ? "the chain's validator set" : "the committee file's members");
    // What changed at the boundary into this epoch.
    const e = String(Number(c.epoch) - 1);
    const prev = state.prev && state.prev.epoch === e ? state.prev.committee : null;
    const d = prev ? cv.committeeDiff(prev, c) : null;
    const changeOf = new Map(d ? d.rows.map((r) => [r.seat, r.change]) : []);
    const line = $("cur-change");
    line.textContent = "";
    if (d && !d.changed) line.textContent = `unchanged since epoch ${e}`;
    if (d && d.changed) {
      const of = (ch) => d.rows.filter((r) => r.change === ch);
      line.textContent = `since epoch ${e}: ` + [
        of("joins").length ? "joined " + rowNames(of("joins")) : "",
        of("leaves").length ? "left " + rowNames(of("leaves")) : "",
        of("rebound").length ? "new sidecar key for " + rowNames(of("rebound")) : "",
      ].filter(Boolean).join("; ");
    }
    const rows = cv.seatsOf(c).map((s) => {
      const self = s.members.some(isSelf);
      const linked = s.members.some((m) => m.self || m.connected);
      const link = !s.members.length ? "cannot sign" : self ? "self" : linked ? "connected" : "disconnected";
      const change = changeOf.get(s.seat);
      const cls = [s.members.length && !linked ? "down" : "", change === "joins" || change === "rebound" ? "change-" + change : ""];
      return el("tr", { class: cls.filter(Boolean).join(" "), "data-seat": s.seat, "data-self": self ? "yes" : "no", "data-change": change || "" },
        el("td", { class: "mono", title: "consensus key " + s.seat }, short(s.seat)),
        sidecarCell(s.members),
        el("td", {}, s.members.length ? el("span", { class: "dot " + (linked ? "up" : "off") }) : null, link));
    });
    $("seats").tBodies[0].replaceChildren(...rows);
  }

  // epochCommittee asks for epoch e's committee: {epoch, committee, error},
  // committee null when the sidecar cannot tell it (404: not yet known, or
  // no longer); a network failure throws.
  async function epochCommittee(e) {
    try {
      return { epoch: e, committee: await api(`/api/v1/committee?epoch=${e}`), error: "" };
    } catch (err) {
      if (!err.status) throw err;
      return { epoch: e, committee: null, error: err.status === 404 ? "" : err.message };
    }
  }

  // refreshNext asks for the next epoch's committee: once per epoch, then
  // again only once the head reached the block whose state decides it
  // (before, the sidecar cannot tell, and asking costs it a chain call),
  // until it answers; it stays known for the rest of the epoch.
  let nextBusy = false;
  async function refreshNext() {
    const c = state.committee;
    if (!c || !c.epoch_length || nextBusy) return;
    const e = String(Number(c.epoch) + 1);
    if (state.next && state.next.epoch === e) {
      const p = cv.epochProgress(c, state.head ? state.head.height : null);
      if (state.next.committee || !p.nextKnowable) return;
    }
    nextBusy = true;
    try {
      state.next = await epochCommittee(e);
    } finally {
      nextBusy = false;
    }
    renderEpoch();
  }

  // refreshPrev asks once per epoch for the previous epoch's committee, to
  // show what changed at the boundary.
  let prevBusy = false;
  async function refreshPrev() {
    const c = state.committee;
    if (!c || !c.epoch_length || prevBusy || Number(c.epoch) < 1) return;
    const e = String(Number(c.epoch) - 1);
    if (state.prev && state.prev.epoch === e) return;
    prevBusy = true;
    try {
      state.prev = await epochCommittee(e);
    } finally {
      prevBusy = false;
    }
    renderEpoch();
  }

  // names lists the signers of diff rows (a seat without one by its key).
  const rowNames = (rows) => rows.map((r) => (r.members.length ? r.members.map((m) => m.name).join("/") : short(r.seat))).join(", ");

  const CHANGES = { joins: "joins", leaves: "leaves", rebound: "new sidecar key", stays: "stays" };

  function renderNext(p) {
    const e = String(p.nextEpoch);
    const n = state.next && state.next.epoch === e ? state.next : null;
    const table = $("next-seats");
    const unknown = $("next-unknown");
    if (!n || !n.committee) {
      table.hidden = true;
      unknown.hidden = false;
      $("next-summary").textContent = `epoch ${e}: not yet known`;
      const when = p.head !== null && p.head < p.committeeBlock ? ` (in ${plural(p.committeeBlock - p.head, "block")})` : "";
      unknown.textContent = n && n.error
        ? "Not known: " + n.error
        : `Not yet known: the chain's validator set after block #${p.committeeBlock} decides it${when}. ` +
          "Bindings from a later epoch (below) take effect then.";
      return;
    }
    const d = cv.committeeDiff(state.committee, n.committee);
    const k = d.counts;
    $("next-summary").textContent = `epoch ${e}: ${plural(n.committee.n, "seat")} · quorum ${n.committee.quorum} · ` +
      (d.changed ? [k.joins ? k.joins + " joining" : "", k.leaves ? k.leaves + " leaving" : "", k.rebound ? k.rebound + " rebound" : ""]
        .filter(Boolean).join(", ") : "no change");
    unknown.hidden = true;
    table.hidden = false;
    table.tBodies[0].replaceChildren(...d.rows.map((r) => el("tr", {
      class: "change-" + r.change, "data-seat": r.seat, "data-change": r.change,
      title: r.change === "rebound" ? "signed in epoch " + p.epoch + " by " + r.previous.map((m) => m.name).join(", ") : "",
    },
      el("td", { class: "mono", title: "consensus key " + r.seat }, short(r.seat)),
      sidecarCell(r.members),
      el("td", {}, el("span", { class: "change" }, CHANGES[r.change])))));
  }

  // refreshBindings reads the bindings the sidecar holds; a network whose
  // committee does not come from the chain has none (the route is absent).
  async function refreshBindings() {
    if (state.bindings === false) return;
    try {
      const r = await api("/api/v1/bindings");
      state.bindings = r.bindings || [];
    } catch (e) {
      if (e.status !== 404) throw e;
      state.bindings = false;
    }
    renderBindings();
  }

  const STATUS = {
    signs: () => "signs",
    pending: (r) => "from epoch " + r.firstEpoch,
    superseded: () => "superseded by a later binding",
    unseated: () => "not in the chain's validator set",
    unused: () => "not in effect (refused)",
  };

  function renderBindings() {
    const box = $("bindings-view");
    if (!state.bindings || !state.committee) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const names = new Map();
    for (const c of [state.next && state.next.committee, state.committee]) {
      for (const m of (c && c.members) || []) names.set(m.id.toLowerCase(), m.name);
    }
    const rows = cv.bindingRows(state.bindings, state.committee, state.info && state.info.id).map((r) => el("tr", {
      "data-binding": r.sidecarKey, "data-status": r.status,
    },
      el("td", { class: "mono", title: "consensus key " + r.consensusKey }, short(r.consensusKey)),
      el("td", {}, names.has(r.sidecarKey) ? names.get(r.sidecarKey) + " " : "",
        el("span", { class: "mono muted", title: "sidecar key " + r.sidecarKey }, short(r.sidecarKey)),
        r.self ? el("span", { class: "tag" }, "this node") : null),
      el("td", { class: "num" }, String(r.firstEpoch)),
      el("td", { class: "status-" + r.status }, STATUS[r.status](r))));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 4, class: "muted" }, "none")));
    $("bindings").tBodies[0].replaceChildren(...rows);
  }

  async function refreshMesh() {
    let mesh = null;
    try {
      mesh = await api("/api/v1/mesh");
    } catch (e) {
      if (!e.status) throw e; // an older sidecar without /api/v1/mesh: committee only
    }
    renderMembers(mesh);
    if (mesh) renderTopics(mesh);
  }

  function renderMembers(mesh) {
    const body = $("members").tBodies[0];
    body.replaceChildren();
    if (mesh) state.scoring = mesh.scoring || null;
    renderScoreHelp();
    const peers = new Map(((mesh && mesh.peers) || []).map((p) => [p.peer_id, p]));
    const members = ((state.committee && state.committee.members) || []).slice().sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const m of members) {
      const p = peers.get(m.peer_id);
      const linked = m.self || m.connected;
      const known = p && p.score !== null && p.score !== undefined;
      const score = m.self ? "" : known ? p.score.toFixed(2) : m.score.toFixed(2);
      const parts = known ? p.score_parts : null;
      const open = !!parts && state.expanded.has(m.name);
      let scoreCell = score;
      if (parts) {
        scoreCell = el("button", { type: "button", class: "score-btn", title: scoreTooltip(m.name, p.score, parts) },
          (open ? "▾ " : "▸ ") + score);
        scoreCell.setAttribute("aria-expanded", String(open));
        scoreCell.addEventListener("click", () => {
          if (state.expanded.has(m.name)) state.expanded.delete(m.name);
          else state.expanded.add(m.name);
          renderMembers(state.mesh);
        });
      }
      body.append(el("tr", { class: linked ? "" : "down", "data-member": m.name },
        el("td", {}, m.name, m.self ? el("span", { class: "tag" }, "this node") : null),
        el("td", {}, el("span", { class: "dot " + (linked ? "up" : "off") }), m.self ? "self" : m.connected ? "connected" : "disconnected"),
        el("td", { class: "num" + (known && p.score < 0 ? " bad" : "") }, scoreCell),
        el("td", { class: "mono", title: m.peer_id }, short(m.peer_id))));
      if (open) {
        const row = el("tr", { class: "score-parts", "data-member": m.name }, el("td", { colSpan: 4 }, scoreBreakdown(p.score, parts)));
        body.append(row);
      }
    }
    const others = ((mesh && mesh.peers) || []).filter((p) => !p.member && p.connected);
    $("others").textContent = others.length
      ? `+ ${others.length} other connected peer${others.length > 1 ? "s" : ""} (light clients)`
      : "";
  }

  // ---------- peer score explanation ----------

  const signed = (x) => (x < 0 ? "−" : "+") + Math.abs(x).toFixed(2);
  const seconds = (ms) => {
    const s = Math.round(Number(ms) / 1000);
    return s < 120 ? s + " s" : Math.round(s / 60) + " min";
  };

  // scoreTerms lists a score's terms as [label, value, detail].
  function scoreTerms(parts) {
    const capped = parts.topic_cap > 0 && parts.topic_sum > parts.topic_cap;
    const terms = [
      ["committee bonus", parts.committee_bonus, "application-specific: committee members get it, other peers 0"],
      ["topics", capped ? parts.topic_cap : parts.topic_sum,
        capped ? `sum ${signed(parts.topic_sum)}, positive sums capped at ${parts.topic_cap}` : "time in mesh + first deliveries − invalid messages"],
      ["IP colocation", parts.ip_colocation, `surplus² ${parts.ip_colocation_factor.toFixed(2)} (peers beyond the threshold on one IP address)`],
      ["behaviour penalty", parts.behaviour, `counter ${parts.behaviour_counter.toFixed(2)} (broken IWANT promises, GRAFT floods)`],
    ];
    return terms;
  }

  function topicTerms(t) {
    return `${t.kind}${t.topics > 1 ? " (" + t.topics + " topics)" : ""}: in mesh ${seconds(t.time_in_mesh_ms)} ${signed(t.time_in_mesh)}` +
      ` · first deliveries ${t.first_deliveries_count.toFixed(1)} ${signed(t.first_deliveries)}` +
      ` · invalid messages ${t.invalid_messages_count.toFixed(1)} ${signed(t.invalid_messages)}`;
  }

  function scoreTooltip(name, score, parts) {
    const lines = [`${name}'s gossipsub score here: ${score.toFixed(2)} =`];
    for (const [label, v] of scoreTerms(parts)) lines.push(`  ${label} ${signed(v)}`);
    for (const t of parts.topics || []) lines.push("    " + topicTerms(t));
    lines.push("(click for details)");
    return lines.join("\n");
  }

  function scoreBreakdown(score, parts) {
    const ul = el("ul", { class: "score-terms" });
    for (const [label, v, detail] of scoreTerms(parts)) {
      ul.append(el("li", { class: v < 0 ? "bad" : "" }, el("b", {}, label + " " + signed(v)), " ", el("small", { class: "muted" }, detail)));
    }
    for (const t of parts.topics || []) {
      ul.append(el("li", { class: "topic" + (t.invalid_messages < 0 ? " bad" : "") }, topicTerms(t)));
    }
    return el("div", {}, el("span", {}, "score " + score.toFixed(2) + " = "), ul);
  }

  // renderScoreHelp says what a peer score is, with this node's parameters.
  function renderScoreHelp() {
    const sc = state.scoring;
    const help = $("score-help");
    if (!sc) {
      help.textContent = "Peer score: gossipsub's score of each peer as seen from this node (scoring is off or not reported).";
      return;
    }
    help.textContent = "Peer score: gossipsub's rating of each peer as seen from this node. " +
      `Committee members get a bonus of ${sc.committee_bonus}. Each topic adds time in the mesh (${sc.time_in_mesh_weight} per second, ` +
      `at most ${seconds(sc.time_in_mesh_cap_ms)}) and first deliveries (at most ${sc.first_deliveries_cap}), together capped at ` +
      `${sc.topic_score_cap}, and takes ${-sc.invalid_message_weight} × (invalid messages)², halving every ` +
      `${seconds(sc.invalid_message_half_life_ms)}. More than ${sc.ip_colocation_threshold} peers on one IP address cost ` +
      `${-sc.ip_colocation_weight} × surplus², gossip misbehaviour ${-sc.behaviour_penalty_weight} × excess² over ` +
      `${sc.behaviour_penalty_threshold}. Below ${sc.gossip_threshold} a peer gets no gossip, below ${sc.publish_threshold} ` +
      `none of our messages, below ${sc.graylist_threshold} it is ignored. Click a score for its terms.`;
  }

  function renderTopics(mesh) {
    const prev = state.mesh;
    state.mesh = mesh;
    const body = $("topics").tBodies[0];
    body.replaceChildren();
    const dt = prev ? (Number(mesh.unix_millis) - Number(prev.unix_millis)) / 1000 : 0;
    for (const t of mesh.topics) {
      const p = prev && prev.topics.find((x) => x.kind === t.kind);
      const validated = (x) => Number(x.accepted) + Number(x.ignored) + Number(x.rejected) + Number(x.duplicates) - Number(x.published);
      const rate = (f) => (p && dt > 0 ? Math.max(0, (f(t) - f(p)) / dt).toFixed(1) : "–");
      // Objects per accepted frame from peers over the last interval.
      const accepted = (x) => Number(x.accepted) - Number(x.published);
      const perFrame = p && accepted(t) > accepted(p)
        ? ((Number(t.objects_received) - Number(p.objects_received)) / (accepted(t) - accepted(p))).toFixed(1)
        : "–";
      body.append(el("tr", { "data-topic": t.kind },
        el("td", {}, t.kind),
        el("td", { class: "num" }, rate(validated)),
        el("td", { class: "num" }, perFrame),
        el("td", { class: "num" }, rate((x) => Number(x.published))),
        el("td", { class: "num" }, t.delivered),
        el("td", { class: "num" + (Number(t.rejected) ? " warn" : "") }, t.rejected),
        el("td", { class: "num" + (Number(t.dropped) ? " bad" : "") }, t.dropped)));
    }
  }

  async function refreshEvidence() {
    const r = await api("/api/v1/evidence");
    for (const e of r.evidence || []) addEvidence(e);
    renderAlerts();
  }

  // ---------- resynchronising after a (re)connection ----------

  async function refreshStatus(tx) {
    applyStatus(tx, await api(`/api/v1/tx/${tx.hash}/status`));
  }

  // applyStatus merges what the board says of a payment (the status route's
  // shape, also each item of /api/v1/payments).
  function applyStatus(tx, s) {
    tx.sender = tx.sender || s.sender || "";
    tx.recipient = tx.recipient || s.recipient || "";
    if (tx.amount === null && s.amount !== undefined) tx.amount = s.amount;
    if (s.settlement_failure && !tx.failure) tx.failure = s.settlement_failure;
    for (const c of s.certificates || []) {
      if (!tx.certs.has(c.signer.name)) tx.certs.set(c.signer.name, Number(c.created_unix_millis));
    }
    if (s.qc_formed && !tx.qcAt) {
      tx.qcAt = Number(s.qc_unix_millis) || Number(s.first_seen_unix_millis);
      tx.qcHash = s.qc_hash;
    }
    const stages = s.stages || {};
    for (const name of STAGES) {
      if (stages[name] && !tx.stages[name]) {
        const h = name === "QUEUED_ONCHAIN" ? 0 : Number(s.block_height);
        tx.stages[name] = { at: Number(stages[name]), height: h };
      }
    }
    touch(tx);
  }

  let resyncing = false;
  async function resync() {
    if (resyncing) return;
    resyncing = true;
    state.resyncWanted = false;
    try {
      await Promise.all([refreshInfo(), refreshCommittee()]);
      // The newest payments the board still holds, whatever their age: a
      // reload shows what the sidecar knows, not only what the stream said.
      const r = await api(`/api/v1/payments?limit=${MAX_TXS}`);
      for (const s of r.payments || []) {
        const created = (s.certificates || []).map((c) => Number(c.created_unix_millis));
        const at = created.length ? Math.min(...created) : Number(s.first_seen_unix_millis);
        const tx = txFor(s.tx_hash, at);
        if (tx.certs.size === 0 && created.length) tx.first = at;
        applyStatus(tx, s);
      }
      await refreshEvidence();
    } catch (e) {
      state.resyncWanted = true; // try again on the next tick
    } finally {
      resyncing = false;
    }
  }

  // ---------- the event stream ----------

  let stream = null;
  function connectStream() {
    if (stream) stream.close();
    const es = new EventSource("/api/v1/events");
    stream = es;
    const on = (name, fn) => es.addEventListener(name, (ev) => {
      try {
        fn(JSON.parse(ev.data));
      } catch (e) {
        console.warn("bad event", name, e);
      }
    });
    es.onopen = () => {
      state.streamOpen = true;
      renderConn();
      if (state.resyncWanted) resync();
    };
    es.onerror = () => {
      if (state.streamOpen) state.streamDownSince = Date.now();
      state.streamOpen = false;
      state.resyncWanted = true;
      renderConn();
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (an HTTP error): start a new stream.
        setTimeout(() => { if (stream === es) connectStream(); }, 3000);
      }
    };
    on("certificate", onCertificate);
    on("qc", onQC);
    on("lifecycle", onLifecycle);
    on("equivocation", onEquivocation);
    on("settlement_failure", onSettlementFailure);
    on("dropped", () => resync());
  }

  // ---------- dev wallet ----------

  // scheduleWallet refreshes the balances, one request at a time: a call
  // while one runs asks for one more afterwards.
  let walletBusy = false;
  let walletAgain = false;
  function scheduleWallet() {
    if (state.devWallet === false) return;
    if (walletBusy) {
      walletAgain = true;
      return;
    }
    walletBusy = true;
    refreshWallet().catch(() => {}).finally(() => {
      walletBusy = false;
      if (walletAgain) {
        walletAgain = false;
        scheduleWallet();
      }
    });
  }

  async function refreshWallet() {
    let r;
    try {
      r = await api("/api/v1/dev/accounts");
    } catch (e) {
      if (e.status === 404) {
        state.devWallet = false;
        $("wallet").hidden = true;
      }
      return;
    }
    const first = state.devWallet !== true;
    state.devWallet = true;
    $("wallet").hidden = false;
    for (const a of r.accounts) state.names.set(a.address.toLowerCase(), a.name);
    renderBalances(r);
    $("demo-run").disabled = !r.demo_enabled || demoRunning;
    if (first) {
      const names = r.accounts.map((a) => a.name);
      for (const [id, pick] of [["pay-from", 0], ["pay-to", 1]]) {
        const sel = $(id);
        sel.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
        sel.value = names[pick] || names[0];
      }
      for (const tx of state.txs.values()) touch(tx); // names changed
    }
  }

  // renderBalances shows each account's balance at the chain head and, when
  // the validator holds payments the chain does not show yet, the pending
  // amounts and what the account may spend. An answer for an older head
  // than the one shown is dropped.
  function renderBalances(r) {
    const height = Number(r.block_height);
    if (height < state.walletHeight) return;
    state.walletHeight = height;
    const line = $("balances");
    line.dataset.height = String(height);
    const parts = ["on chain at #" + height + ": "];
    r.accounts.forEach((a, i) => {
      const debit = BigInt(a.pending_debit || "0");
      const credit = BigInt(a.pending_credit || "0");
      const pending = [debit > 0n ? "−" + dollars(debit) : "", credit > 0n ? "+" + dollars(credit) : ""].filter(Boolean).join(" ");
      if (i > 0) parts.push(" · ");
      parts.push(el("span", {
        class: "bal", "data-account": a.name, "data-balance": a.balance, "data-available": a.available || a.balance,
        title: pending ? "pending: certified or signed here, not on chain at #" + height + "; available " + dollars(a.available) : "",
      }, `${a.name} ${dollars(a.balance)}`, pending ? el("small", { class: "pending" }, ` (${pending} pending → ${dollars(a.available)})`) : null));
    });
    line.replaceChildren(...parts);
  }

  async function pay(ev) {
    ev.preventDefault();
    const btn = $("pay-submit");
    const out = $("pay-result");
    btn.disabled = true;
    out.className = "small";
    out.textContent = "signing and submitting …";
    try {
      const r = await api("/api/v1/dev/pay", {
        method: "POST", timeout: 35000,
        body: { from: $("pay-from").value, to: $("pay-to").value, amount: $("pay-amount").value },
      });
      out.textContent = `QC in ${r.time_to_qc_ms.toFixed(1)} ms, signed by ${r.signers.join(", ")} (tx ${short(r.tx_hash)}${r.parent_tx ? ", parent " + short(r.parent_tx) : ""})`;
      out.className = "small ok";
      scheduleWallet();
    } catch (e) {
      out.textContent = "failed: " + e.message;
      out.className = "small bad";
    } finally {
      btn.disabled = false;
    }
  }

  let demoRunning = false;
  async function runDemo() {
    const btn = $("demo-run");
    const log = $("demo-log");
    const status = $("demo-status");
    const setStatus = (s, text) => {
      status.dataset.state = s;
      status.textContent = text;
    };
    demoRunning = true;
    btn.disabled = true;
    log.replaceChildren();
    delete status.dataset.tx1;
    delete status.dataset.tx2;
    setStatus("running", "running …");
    try {
      const res = await fetch("/api/v1/dev/demo", { method: "POST", cache: "no-store" });
      if (!res.ok) {
        const doc = await res.json().catch(() => null);
        throw new Error((doc && doc.error && doc.error.message) || res.status + " " + res.statusText);
      }
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      let done = false;
      while (!done) {
        const chunk = await reader.read();
        done = chunk.done;
        buf += dec.decode(chunk.value || new Uint8Array(), { stream: !done });
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (line) demoLine(JSON.parse(line), log, setStatus);
        }
      }
      if (status.dataset.state === "running") setStatus("error", "the demo stream ended early");
    } catch (e) {
      setStatus("error", "failed: " + e.message);
    } finally {
      demoRunning = false;
      btn.disabled = false;
      scheduleWallet();
    }
  }

  function demoLine(l, log, setStatus) {
    if (l.type === "line") {
      log.append(el("li", {}, l.text));
      log.scrollTop = log.scrollHeight;
    } else if (l.type === "error") {
      setStatus("error", "failed: " + l.message);
    } else if (l.type === "result") {
      const r = l.result;
      const status = $("demo-status");
      status.dataset.tx1 = r.tx1;
      status.dataset.tx2 = r.tx2;
      const before = r.qcs_before_block ? "both QCs before the next block" : `blocks #${r.height_at_start} → #${r.height_at_qc2} meanwhile`;
      setStatus("done", `done: QCs in ${r.time_to_qc1_ms.toFixed(1)} and ${r.time_to_qc2_ms.toFixed(1)} ms (${before}); settled in #${r.settled1} and #${r.settled2}`);
    }
  }

  // ---------- polling ----------

  let ticking = false;
  async function tick() {
    renderConn();
    if (ticking) return; // the previous round is still waiting (timeouts)
    ticking = true;
    state.tick++;
    const jobs = [refreshHead()];
    if (state.tick % 2 === 1) jobs.push(refreshCommittee().then(refreshMesh));
    if (state.tick % 5 === 1) jobs.push(refreshEvidence());
    if (state.tick % 5 === 3 && state.committee && state.committee.epoch_length) jobs.push(refreshBindings());
    if (state.tick % 5 === 1 && state.devWallet === null) scheduleWallet(); // is there a dev wallet?
    if (!state.info) jobs.push(refreshInfo());
    await Promise.allSettled(jobs);
    ticking = false;
    if (state.resyncWanted && state.streamOpen && state.reachable) resync();
  }

  function start() {
    $("pay-form").addEventListener("submit", pay);
    $("demo-run").addEventListener("click", runDemo);
    connectStream();
    tick();
    setInterval(tick, TICK_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
