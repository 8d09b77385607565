// loopgate's page script: live queue (SSE), countdowns, keyboard shortcuts,
// claim on open, the output editor's diff, confirmations, and receipt
// verification. Every page works without it; it only makes them faster.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

function span(ms) {
  const s = Math.floor(Math.abs(ms) / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) { const m = Math.floor((s % 3600) / 60); return m ? `${Math.floor(s / 3600)}h ${m}m` : `${Math.floor(s / 3600)}h`; }
  return `${Math.floor(s / 86400)}d`;
}

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

// --- confirmations -----------------------------------------------------------
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// --- countdowns ----------------------------------------------------------------
function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll("time[data-countdown]")) {
    const due = Date.parse(el.getAttribute("datetime"));
    if (Number.isNaN(due)) continue;
    const late = due <= now;
    el.textContent = late ? `overdue ${span(now - due)}` : `in ${span(due - now)}`;
    el.classList.toggle("overdue", late);
    el.closest("tr")?.classList.toggle("is-overdue", late);
  }
}
setInterval(tick, 1000);

// --- live events ----------------------------------------------------------------
// One stream per page, closed when the page is left: browsers allow six
// connections per server, and a page kept in the back/forward cache would
// otherwise hold its stream open.
function listen(onEvent) {
  if (!("EventSource" in window)) return;
  let source = null;
  const open = () => {
    source = new EventSource("/v1/events");
    source.onmessage = (message) => {
      try { onEvent(JSON.parse(message.data)); } catch (_) { /* not ours */ }
    };
  };
  window.addEventListener("pagehide", () => { source?.close(); source = null; });
  window.addEventListener("pageshow", (event) => { if (event.persisted && !source) { open(); onEvent({ type: "resync" }); } });
  open();
}

// --- the queue -----------------------------------------------------------------
function setupQueue(table) {
  const url = table.dataset.liveQueue;
  let selected = -1;
  const rows = () => [...table.querySelectorAll("tbody tr[data-task]")];
  const select = (i) => {
    const all = rows();
    if (!all.length) return;
    selected = Math.max(0, Math.min(i, all.length - 1));
    all.forEach((row, j) => row.classList.toggle("is-selected", j === selected));
    all[selected].querySelector("a")?.focus();
  };
  // Batch decisions: checkboxes, Shift-click for a range, `x` toggles.
  const picks = () => [...table.querySelectorAll("input.pick")];
  const counter = document.getElementById("batch-count");
  const buttons = [document.getElementById("batch-approve"), document.getElementById("batch-reject")];
  const counted = () => {
    const n = picks().filter((box) => box.checked).length;
    if (counter) counter.textContent = n ? `${n} selected` : "Select tasks to decide them together.";
    for (const button of buttons) if (button) button.disabled = n === 0;
  };
  let anchor = null;
  table.addEventListener("click", (event) => {
    const box = event.target;
    // A batch's box selects every call of the batch the reviewer may decide.
    if (box instanceof HTMLInputElement && box.classList.contains("pick-batch")) {
      for (const row of table.querySelectorAll(`tbody tr[data-batch="${CSS.escape(box.dataset.batch)}"]`)) {
        const pick = row.querySelector("input.pick");
        if (pick && !pick.disabled) pick.checked = box.checked;
      }
      counted();
      return;
    }
    if (!(box instanceof HTMLInputElement) || !box.classList.contains("pick")) return;
    const all = picks();
    if (event.shiftKey && anchor !== null && all.includes(anchor)) {
      const [from, to] = [all.indexOf(anchor), all.indexOf(box)].sort((a, b) => a - b);
      for (const other of all.slice(from, to + 1)) if (!other.disabled) other.checked = box.checked;
    }
    anchor = box;
    counted();
  });
  counted();
  document.addEventListener("keydown", (event) => {
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "j") { select(selected + 1); event.preventDefault(); }
    if (event.key === "k") { select(selected - 1); event.preventDefault(); }
    if (event.key === "x" && selected >= 0) {
      const box = rows()[selected]?.querySelector("input.pick");
      if (box && !box.disabled) { box.checked = !box.checked; anchor = box; counted(); }
      event.preventDefault();
    }
  });
  let timer = null;
  const refresh = async () => {
    const before = new Set(rows().map((r) => r.dataset.task));
    const checked = new Set(picks().filter((box) => box.checked).map((box) => box.value));
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const html = await response.text();
    const body = table.querySelector("tbody");
    const holder = document.createElement("tbody");
    body.replaceWith(holder);
    holder.outerHTML = html;
    const fresh = rows();
    for (const row of fresh) if (!before.has(row.dataset.task)) row.classList.add("is-new");
    for (const box of picks()) if (checked.has(box.value) && !box.disabled) box.checked = true;
    counted();
    const total = document.getElementById("queue-total");
    if (total) total.textContent = String(fresh.length);
    tick();
  };
  listen(() => { clearTimeout(timer); timer = setTimeout(refresh, 250); });
}

// --- a task ----------------------------------------------------------------------
function lineDiff(a, b) {
  const x = a.split("\n"), y = b.split("\n");
  const n = x.length, m = y.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) { out.push([" ", x[i]]); i++; j++; }
    else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) { out.push(["-", x[i]]); i++; }
    else { out.push(["+", y[j]]); j++; }
  }
  return out;
}

function setupTask(head) {
  const form = document.getElementById("decision-form");
  const rationale = document.getElementById("rationale");
  const editor = document.getElementById("editor");
  const output = document.getElementById("output");
  const modify = document.getElementById("modify");
  const lease = document.getElementById("lease");
  const notice = document.getElementById("live-notice");
  const original = document.getElementById("original-json")?.innerHTML ?? "";
  const originalText = (() => { const t = document.createElement("textarea"); t.innerHTML = original; return t.value; })();
  let pending = null;

  if (head.dataset.claim) {
    fetch(head.dataset.claim, { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } })
      .then(async (response) => {
        const body = await response.json().catch(() => ({}));
        if (response.ok) {
          const until = Date.parse(body.lease_expires_at);
          lease.textContent = `Yours for ${span(until - Date.now())}`;
        } else {
          lease.textContent = body.detail ?? "Could not claim this task.";
        }
      })
      .catch(() => {});
  }

  const showDiff = () => {
    const target = document.getElementById("output-diff");
    if (!target || !output) return;
    target.replaceChildren(...lineDiff(originalText, output.value)
      .filter(([kind]) => kind !== " ")
      .map(([kind, text]) => { const el = document.createElement(kind === "+" ? "ins" : "del"); el.textContent = `${kind} ${text}`; return el; }));
    if (!target.childElementCount) target.textContent = "(no changes yet)";
  };
  const openEditor = () => {
    if (!editor || !output) return;
    editor.hidden = false; output.disabled = false; if (modify) modify.hidden = false;
    output.focus(); showDiff();
  };
  document.getElementById("edit-output")?.addEventListener("click", openEditor);
  output?.addEventListener("input", showDiff);
  if (editor && !editor.hidden) showDiff();

  const needsRationale = (button) => button?.hasAttribute("data-needs-rationale") && !rationale.value.trim();
  const decide = (button) => {
    if (!button || !form) return;
    if (needsRationale(button)) {
      pending = button;
      rationale.setAttribute("aria-invalid", "true");
      rationale.placeholder = `Why ${button.value}? Then Ctrl+Enter.`;
      rationale.focus();
      return;
    }
    form.requestSubmit(button);
  };
  form?.addEventListener("submit", (event) => {
    if (needsRationale(event.submitter)) { event.preventDefault(); decide(event.submitter); }
  });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      if (event.target === rationale) { event.preventDefault(); decide(pending ?? (editor && !editor.hidden ? modify : form?.querySelector('[data-key="a"]'))); }
      else if (event.target === output) { event.preventDefault(); decide(modify); }
      return;
    }
    if (event.key === "Escape" && typing(event.target)) { event.target.blur(); return; }
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "j") { document.getElementById("next-task")?.click(); return; }
    if (event.key === "k") { document.getElementById("prev-task")?.click(); return; }
    if (event.key === "e") { event.preventDefault(); openEditor(); return; }
    const button = form?.querySelector(`button[data-key="${CSS.escape(event.key)}"]`);
    if (button && event.key !== "e") { event.preventDefault(); decide(button); }
  });

  const me = document.querySelector(".who a")?.textContent?.trim();
  listen((event) => {
    if (event.task !== head.dataset.task || event.actor === `user:${me}`) return;
    const who = event.actor.replace(/^user:/, "");
    const what = { "task.claimed": `${who} took this task.`, "decision.recorded": `${who} decided this task.`, "task.escalated": "This task was escalated.", "task.expired": "This task's deadline passed." }[event.type];
    if (what && notice) { notice.textContent = `${what} Reload to see the current state.`; notice.hidden = false; }
  });
}

// --- receipts (RFC 9162 inclusion proofs, C2SP signed notes) ---------------------
const b64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const sha256 = async (...parts) => {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0; for (const p of parts) { all.set(p, at); at += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", all));
};
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

async function rootFromProof(index, size, leaf, proof) {
  if (index >= size) return null;
  let fn = index, sn = size - 1, r = leaf;
  for (const p of proof) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(Uint8Array.of(1), p, r);
      if (fn % 2 === 0) while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = await sha256(Uint8Array.of(1), r, p);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

async function verifyNote(note, verifierKey) {
  // `<name>+<key id>+<base64 key>`: the key's base64 may hold `+` itself.
  const parts = verifierKey.trim().split("+");
  const name = parts[0];
  const key = parts.slice(2).join("+");
  const raw = b64(key);
  if (raw[0] !== 1) return false;
  const split = note.indexOf("\n\n");
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2).split("\n").filter((l) => l.startsWith(`\u2014 ${name} `));
  const publicKey = await crypto.subtle.importKey("raw", raw.slice(1), { name: "Ed25519" }, false, ["verify"]);
  for (const line of lines) {
    const sig = b64(line.split(" ").pop());
    if (await crypto.subtle.verify({ name: "Ed25519" }, publicKey, sig.slice(4), new TextEncoder().encode(text))) return true;
  }
  return false;
}

async function setupReceipt(box) {
  const status = document.getElementById("receipt-status");
  const note = document.getElementById("receipt-checkpoint")?.innerHTML;
  const decode = (html) => { const t = document.createElement("textarea"); t.innerHTML = html; return t.value; };
  if (!note) { status.textContent = "No checkpoint covers these entries yet."; return; }
  const checkpoint = decode(note);
  try {
    const signed = await verifyNote(checkpoint, box.dataset.pubkey);
    const [, size, root] = checkpoint.split("\n");
    const rootHash = b64(root);
    let good = 0, bad = 0;
    for (const item of box.querySelectorAll("li[data-index]")) {
      const result = item.querySelector(".verify-result");
      if (!item.dataset.proof) continue;
      const entry = new TextEncoder().encode(decode(item.querySelector("template").innerHTML));
      const leaf = await sha256(Uint8Array.of(0), entry);
      const proof = item.dataset.proof.split(" ").filter(Boolean).map(b64);
      const computed = await rootFromProof(Number(item.dataset.index), Number(size), leaf, proof);
      const ok = computed && equal(computed, rootHash);
      result.textContent = ok ? "included ✓" : "NOT included ✗";
      result.className = `verify-result ${ok ? "verify-ok" : "verify-bad"}`;
      ok ? good++ : bad++;
    }
    if (!signed || bad > 0) {
      status.className = "verify-bad";
      status.textContent = `Verification FAILED: the signature is ${signed ? "valid" : "invalid"}, ${bad} entries are not proven.`;
    } else if (good === 0) {
      status.className = "muted";
      status.textContent = "The checkpoint's signature is valid, but no entry of this proposal is in a checkpoint yet; look again in a moment.";
    } else {
      status.className = "verify-ok";
      status.textContent = `Verified in this page: the checkpoint's signature is valid and ${good} entries are in the tree of size ${size}.`;
    }
  } catch (error) {
    status.className = "verify-bad";
    status.textContent = `This browser could not verify (${error.message}); use loopgate audit verify.`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  tick();
  const queue = document.querySelector("[data-live-queue]");
  if (queue) setupQueue(queue);
  const task = document.querySelector(".task-head[data-task]");
  if (task) setupTask(task);
  const receipt = document.getElementById("receipt");
  if (receipt) setupReceipt(receipt);
});
