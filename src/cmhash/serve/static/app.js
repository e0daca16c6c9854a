// cmhash search page: plain JavaScript, no build step. Talks to /search, /search/image and /health.
"use strict";
const $ = (id) => document.getElementById(id);
const readable = (t) => String(t ?? "").replace(/,(?=\S)/g, ", ");  // tag lines "a,b,c" wrap as "a, b, c"
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

function clearResults() {
  $("results").innerHTML = ""; $("text-results").innerHTML = ""; $("text-results").hidden = true;
  $("message").hidden = true; $("summary").textContent = ""; $("query-image").hidden = true;
}

function showError(body, status) {
  const box = $("message");
  const chips = (body.suggestions || []).map((s) => `<span class="chip" data-q="${esc(s)}">${esc(s)}</span>`).join("");
  box.innerHTML = `<div class="msg-text">${esc(body.error || ("request failed (" + status + ")"))}</div>` + (chips ? `<div class="chips">Try: ${chips}</div>` : "");
  box.hidden = false;
  box.dataset.kind = body.kind || "";
  box.querySelectorAll(".chip").forEach((c) => c.addEventListener("click", () => { $("q").value = c.dataset.q; runText(); }));
}

function card(h) {
  const pic = h.thumbnail ? `<img src="${esc(h.thumbnail)}" alt="${esc(h.text || h.id)}" loading="lazy">` : `<div class="noimg">no picture</div>`;
  const text = readable(h.text || (h.texts && h.texts[0]) || "");
  return `<article class="card result" data-id="${esc(h.id)}"><div class="pic">${pic}<span class="badge" title="Hamming distance">d = ${h.distance}</span></div>` +
    `<div class="body"><div class="text">${esc(text)}</div><div class="id">${esc(h.id)}${h.labels && h.labels.length ? " · " + esc(h.labels.join(", ")) : ""}</div></div></article>`;
}

function textItem(h) {
  const pic = h.thumbnail ? `<img src="${esc(h.thumbnail)}" alt="">` : "";
  return `<li class="text-result" data-id="${esc(h.id)}"><span class="dist" title="Hamming distance">d = ${h.distance}</span>${pic}<span>${esc(readable(h.text || (h.texts || []).join(" / ") || h.id))}</span></li>`;
}

function render(body) {
  const res = body.results || [];
  const what = body.modality === "text" ? `“${esc(body.query)}”` + (body.read_as && body.read_as !== body.query ? ` (read as: ${esc(body.read_as)})` : "") : `image ${esc(body.query || "")}`;
  $("summary").innerHTML = `${res.length} ${body.target === "text" ? "texts" : "results"} for ${what} · ${body.took_ms} ms`;
  if (body.target === "text") {
    $("text-results").innerHTML = res.map(textItem).join(""); $("text-results").hidden = false;
  } else {
    $("results").innerHTML = res.map(card).join("");
  }
}

async function call(url, opts) {
  const r = await fetch(url, opts);
  let body = {};
  try { body = await r.json(); } catch (e) { body = { error: `server answered ${r.status}` }; }
  return { ok: r.ok, status: r.status, body };
}

async function runText() {
  const q = $("q").value.trim();
  clearResults();
  if (!q) { showError({ error: "Type a few words to search for." }, 400); return; }
  const k = $("k").value;
  history.replaceState(null, "", `?q=${encodeURIComponent(q)}`);
  const { ok, status, body } = await call(`/search?q=${encodeURIComponent(q)}&k=${k}`);
  ok ? render(body) : showError(body, status);
}

async function runImage(file) {
  clearResults();
  const qi = $("query-image");
  qi.innerHTML = `<img src="${URL.createObjectURL(file)}" alt="query image">`; qi.hidden = false;
  const form = new FormData(); form.append("image", file); form.append("k", $("k").value);
  const { ok, status, body } = await call("/search/image", { method: "POST", body: form });
  ok ? render(body) : showError(body, status);
}

$("search-form").addEventListener("submit", (e) => { e.preventDefault(); runText(); });
const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => { const f = e.dataTransfer.files[0]; if (f) runImage(f); });
$("pick").addEventListener("click", (e) => { e.preventDefault(); $("file").click(); });
$("file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) runImage(f); });

(async () => {
  const { ok, body } = await call("/health");
  if (ok) {
    const m = body.model || {};
    const c = body.counts || {};
    const items = body.per_modality_items ? `${(c.image || 0).toLocaleString()} images · ${(c.text || 0).toLocaleString()} texts` : `${body.items.toLocaleString()} items`;
    $("status").textContent = `${items} · ${body.bits} bits · ${body.backend}` + (m.method ? ` · ${m.method}, reads ${m.text_input}` : "");
  } else { $("status").textContent = "server unavailable"; }
  const q = new URLSearchParams(location.search).get("q");
  if (q) { $("q").value = q; runText(); }
})();
