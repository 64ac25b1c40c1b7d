// modq console: the keyboard (help: "?"), photo reveal / full size, the lease countdown and
// its renewal while the moderator is active, and fresh queue counts. No inline scripts (CSP).
"use strict";
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const csrf = () => ($("input[name=csrf]") || {}).value || "";

// ---- photos: the current one, reveal, full size ----
const figures = () => $$(".photos figure");
let current = 0;
function setCurrent(i) {
  const all = figures();
  if (!all.length) return;
  current = (i + all.length) % all.length;
  all.forEach((f, k) => f.classList.toggle("current", k === current));
  all[current].scrollIntoView({ block: "nearest" });
  const zoom = $("#zoom");
  if (zoom && !zoom.hidden) openZoom(current);
}
function toggleReveal() {
  const zoom = $("#zoom");
  if (zoom && !zoom.hidden) { $("img", zoom).classList.toggle("blurred"); return; }
  const f = figures()[current];
  if (f) $("img.photo", f).classList.toggle("blurred");
}
function openZoom(i) {
  const f = figures()[i];
  const zoom = $("#zoom");
  if (!f || !zoom) return;
  const small = $("img.photo", f);
  const big = $("img", zoom);
  // Still blurred where the page blurs, unless this photo was revealed already.
  big.classList.toggle("blurred", small.classList.contains("blurred"));
  big.src = small.dataset.full;
  zoom.hidden = false;
}
function closeOverlays() {
  for (const id of ["#zoom", "#help"]) { const el = $(id); if (el) el.hidden = true; }
}
document.addEventListener("click", (event) => {
  const thumb = event.target.closest("img.thumb");
  if (thumb) { thumb.classList.toggle("blurred"); return; }
  const img = event.target.closest("img.photo");
  if (img) {
    setCurrent(figures().indexOf(img.closest("figure")));
    img.classList.toggle("blurred");
    return;
  }
  const zoomButton = event.target.closest("button.zoom");
  if (zoomButton) { const i = figures().indexOf(zoomButton.closest("figure")); setCurrent(i); openZoom(i); return; }
  if (event.target.closest("#zoom")) { if (event.target.tagName !== "IMG") closeOverlays(); return; }
  const pick = event.target.closest("button.pick");
  if (pick) { $("#reason").value = pick.dataset.reason; showError(""); return; }
  if (event.target.closest("#help-link")) { event.preventDefault(); toggleHelp(); }
});

// ---- decisions: a reason is required, never defaulted ----
function showError(text) {
  const el = $("#decide-error");
  if (!el) return;
  el.textContent = text;
  el.hidden = !text;
}
const form = $("form#decide");
if (form) {
  form.addEventListener("submit", (event) => {
    const button = event.submitter;
    if (button && button.hasAttribute("data-needs-reason") && !$("#reason").value) {
      event.preventDefault();
      showError(`${button.value}: pick a reason first (keys 1–9 or the list).`);
      $("#reason").focus();
    }
    if (button && button.value === "recategorise" && !$("#category").value) {
      event.preventDefault();
      showError("re-categorise: type the new category first (key c).");
      $("#category").focus();
    }
  });
}
function press(key) {
  const button = form && $(`button[data-key="${key}"]`, form);
  if (button) button.click();
}
function toggleHelp() { const help = $("#help"); if (help) help.hidden = !help.hidden; }

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  // A focused <select> (the reason list) keeps the single-key shortcuts.
  const typing = event.target.closest && event.target.closest("input, textarea");
  if (event.key === "Escape") { closeOverlays(); if (typing) event.target.blur(); return; }
  if (typing) {
    // Enter in the category box re-categorises (never the form's first button, approve).
    if (event.key === "Enter" && event.target.id === "category") { event.preventDefault(); press("g"); }
    else if (event.key === "Enter" && event.target.id === "note") { event.preventDefault(); event.target.blur(); }
    return;
  }
  const key = event.key;
  if (key === "?") { toggleHelp(); return; }
  if (/^[1-9]$/.test(key) && $("#reason")) {
    const option = $("#reason").options[Number(key)];
    if (option) { $("#reason").value = option.value; showError(""); }
    event.preventDefault();
    return;
  }
  const actions = {
    a: () => press("a"), r: () => press("r"), e: () => press("e"), s: () => press("s"),
    g: () => press("g"),
    c: () => { const c = $("#category"); if (c) { event.preventDefault(); c.focus(); } },
    n: () => { const n = $("#note"); if (n) { event.preventDefault(); n.focus(); } },
    v: toggleReveal,
    j: () => setCurrent(current + 1), k: () => setCurrent(current - 1),
    ArrowRight: () => setCurrent(current + 1), ArrowLeft: () => setCurrent(current - 1),
    f: () => openZoom(current),
    x: () => { const f = figures()[current]; const box = f && $("input[name=not_showing]", f); if (box) box.checked = !box.checked; },
    u: () => { const undo = $("form.undo"); if (undo) undo.requestSubmit(); },
  };
  if (actions[key]) actions[key]();
});

// ---- the lease: a countdown, renewed while the moderator is active ----
const lease = $("#lease");
if (lease && lease.dataset.until) {
  let until = Date.parse(lease.dataset.until);
  let active = false;
  for (const name of ["keydown", "click", "mousemove", "scroll"]) {
    document.addEventListener(name, () => { active = true; }, { passive: true });
  }
  const tick = () => {
    const left = Math.round((until - Date.now()) / 1000);
    lease.classList.toggle("low", left < 60);
    lease.textContent = left > 0
      ? `lease ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`
      : "lease ran out: still yours until someone else claims it";
  };
  const renew = async () => {
    if (!active) return;
    active = false;
    const body = new URLSearchParams({ csrf: csrf() });
    const response = await fetch(lease.dataset.renew, { method: "POST", body, credentials: "same-origin" });
    if (response.ok) until = Date.parse((await response.json()).until);
    else lease.textContent = "this job is no longer yours (claimed by someone else or moved)";
  };
  tick();
  setInterval(tick, 1000);
  setInterval(renew, 60000);
}

// ---- queue counts on the home page ----
const table = $("table.queues");
if (table) {
  setInterval(async () => {
    const response = await fetch("/api/queues", { credentials: "same-origin" });
    if (!response.ok) return;
    for (const q of await response.json()) {
      const cell = table.querySelector(`tr[data-queue="${q.queue}"] .pending`);
      if (cell) cell.textContent = q.pending;
      const claimed = table.querySelector(`tr[data-queue="${q.queue}"] .claimed`);
      if (claimed) claimed.textContent = q.claimed;
    }
  }, 15000);
}

// The keys are live from here on (browser tests wait for this before pressing any).
document.documentElement.dataset.keys = "on";
