// The Sluice dashboard. The admin token lives in sessionStorage and goes out
// only as a bearer header; it is never put in a URL or a cookie.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { policy: "", key: "", keyPath: "", timer: null }; // keyPath: the key as the API escapes it

function token() { return sessionStorage.getItem("sluice.token") || ""; }

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: "Bearer " + token() } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  if (resp.status === 401) { signOut("The token was refused."); throw new Error("unauthorized"); }
  const text = await resp.text();
  const data = text ? parseExact(text) : null;
  if (!resp.ok) throw new Error((data && data.error) || resp.statusText);
  return data;
}

function esc(s) { return encodeURIComponent(s); }

// parseExact is JSON.parse, except that integers a JS number cannot hold
// exactly (beyond 2^53, as int64 counters can be) come out as decimal
// strings, so they are shown and sent back digit for digit.
function parseExact(text) {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === "-" || (c >= "0" && c <= "9")) {
      const num = /-?\d+(\.\d+)?([eE][+-]?\d+)?/y;
      num.lastIndex = i;
      const m = num.exec(text);
      const tok = m ? m[0] : c;
      out += m && !m[1] && !m[2] && !Number.isSafeInteger(Number(tok)) ? '"' + tok + '"' : tok;
      i += tok.length;
    } else {
      out += c;
      i++;
    }
  }
  return JSON.parse(out);
}

// int64 checks that s (a number or decimal string) is an int64 and returns
// its decimal string, or throws.
function int64(s, what) {
  const t = String(s).trim();
  if (!/^-?\d+$/.test(t)) throw new Error(what + " must be a whole number");
  const v = BigInt(t);
  if (v < -(2n ** 63n) || v > 2n ** 63n - 1n) throw new Error(what + " is outside the int64 range");
  return v.toString();
}

// counterBody is the JSON of a counter write, with every integer written
// exactly (JSON.stringify cannot write a BigInt).
function counterBody(value, min, max) {
  const b = (v) => (v === null || v === undefined ? "null" : int64(v, "a bound"));
  return '{"value":' + int64(value, "the value") + ',"min":' + b(min) + ',"max":' + b(max) + "}";
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function button(label, action, onClick) {
  const b = document.createElement("button");
  b.textContent = label;
  b.dataset.action = action;
  b.addEventListener("click", (e) => { e.stopPropagation(); onClick(); });
  return b;
}

function showError(err) {
  const p = $("#error");
  p.textContent = err ? String(err.message || err) : "";
  p.hidden = !err;
}

async function loadPolicies() {
  const { policies } = await api("GET", "/v1/policies");
  const body = $("#policies tbody");
  body.replaceChildren();
  const select = $("#policy-select");
  select.replaceChildren();
  for (const p of policies) {
    const tr = document.createElement("tr");
    tr.append(cell(p.name), cell(p.algorithm), cell(String(p.limit), "num"), cell(p.window), cell(p.key.join(", ")));
    body.append(tr);
    const opt = document.createElement("option");
    opt.value = opt.textContent = p.name;
    select.append(opt);
  }
  if (!state.policy && policies.length) state.policy = policies[0].name;
  select.value = state.policy;
}

async function loadKeys() {
  if (!state.policy) return;
  const { keys, active_keys } = await api("GET", "/v1/policies/" + esc(state.policy) + "/keys?limit=50");
  const active = $("#active-keys");
  active.dataset.count = String(active_keys);
  active.textContent = "About " + active_keys.toLocaleString("en") + (active_keys === 1 ? " key" : " keys") +
    " active in the window.";
  // History is kept for the busiest keys: a key that left them goes back
  // to the policy's chart.
  if (state.key && !keys.some((u) => u.key === state.key)) {
    state.key = "";
    loadChart().catch(showError);
  }
  const body = $("#keys tbody");
  body.replaceChildren();
  for (const u of keys) {
    const tr = document.createElement("tr");
    tr.className = "key";
    tr.dataset.key = u.key;
    tr.append(cell(u.key), cell(String(u.count), "num count"), cell(String(u.remaining), "num"),
      cell(String(u.rejected), "num"), cell((u.reset_after_ms / 1000).toFixed(1) + " s", "num"));
    const td = document.createElement("td");
    td.append(button("Reset", "reset", async () => {
      await api("DELETE", "/v1/policies/" + esc(state.policy) + "/keys/" + u.key_path);
      await refresh();
    }));
    tr.append(td);
    tr.addEventListener("click", () => { state.key = u.key; state.keyPath = u.key_path; loadChart().catch(showError); });
    body.append(tr);
  }
}

async function loadCounters() {
  const { counters } = await api("GET", "/v1/counters");
  const body = $("#counters tbody");
  body.replaceChildren();
  for (const c of counters) {
    const tr = document.createElement("tr");
    tr.dataset.counter = c.name;
    tr.append(cell(c.name), cell(String(c.value), "num value"), cell(c.min === null ? "" : String(c.min), "num"),
      cell(c.max === null ? "" : String(c.max), "num"));
    const td = document.createElement("td");
    const step = (verb) => async () => {
      try { await api("POST", "/v1/counters/" + esc(c.name) + "/" + verb); } catch (e) { showError(e); }
      await loadCounters();
    };
    td.append(button("+", "increment", step("increment")), " ", button("−", "decrement", step("decrement")), " ",
      button("Reset", "reset-counter", async () => {
        // Back to 0, or to the nearest bound when 0 lies outside them.
        let v = 0n;
        if (c.min !== null && BigInt(c.min) > v) v = BigInt(c.min);
        if (c.max !== null && BigInt(c.max) < v) v = BigInt(c.max);
        try { await api("PUT", "/v1/counters/" + esc(c.name), counterBody(v, c.min, c.max)); } catch (e) { showError(e); }
        await loadCounters();
      }));
    tr.append(td);
    body.append(tr);
  }
}

async function loadChart() {
  const since = new Date(Date.now() - 3600e3).toISOString().replace(/\.\d+Z$/, "Z");
  let path = "/v1/policies/" + esc(state.policy) + "/history?since=" + since;
  let title = "Requests per minute, last hour: policy " + state.policy;
  if (state.key) {
    path = "/v1/policies/" + esc(state.policy) + "/keys/" + state.keyPath + "/history?since=" + since;
    title = "Requests per minute, last hour: key " + state.key;
  }
  const { points } = await api("GET", path);
  $("#chart-title").textContent = title;
  draw(points);
}

function draw(points) {
  const canvas = $("#chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28;
  ctx.clearRect(0, 0, w, h);
  const now = Math.floor(Date.now() / 60000);
  const minutes = 60;
  const byMinute = new Map(points.map((p) => [Math.floor(Date.parse(p.minute) / 60000), p]));
  let top = 1;
  for (const p of points) top = Math.max(top, p.admitted + p.rejected);
  ctx.strokeStyle = "#e4e7ec";
  ctx.fillStyle = "#667085";
  ctx.font = "12px system-ui, sans-serif";
  ctx.beginPath(); ctx.moveTo(pad, h - pad); ctx.lineTo(w, h - pad); ctx.stroke();
  ctx.fillText(String(top), 2, pad);
  ctx.fillText("-60 min", pad, h - 8);
  ctx.fillText("now", w - 30, h - 8);
  const bw = (w - pad) / minutes;
  for (let i = 0; i < minutes; i++) {
    const p = byMinute.get(now - minutes + 1 + i);
    if (!p) continue;
    const x = pad + i * bw;
    const ha = ((h - 2 * pad) * p.admitted) / top;
    const hr = ((h - 2 * pad) * p.rejected) / top;
    ctx.fillStyle = "#2e7d32"; ctx.fillRect(x + 1, h - pad - ha, bw - 2, ha);
    ctx.fillStyle = "#c0362c"; ctx.fillRect(x + 1, h - pad - ha - hr, bw - 2, hr);
  }
}

async function refresh() {
  try {
    await loadKeys();
    await loadCounters();
    await loadChart();
    showError(null);
  } catch (e) {
    if (e.message !== "unauthorized") showError(e);
  }
}

async function start() {
  $("#signin").hidden = true;
  $("#app").hidden = false;
  $("#signout").hidden = false;
  try { await loadPolicies(); } catch (e) { return; }
  await refresh();
  clearInterval(state.timer);
  state.timer = setInterval(refresh, 2000);
}

function signOut(message) {
  sessionStorage.removeItem("sluice.token");
  clearInterval(state.timer);
  $("#app").hidden = true;
  $("#signout").hidden = true;
  $("#signin").hidden = false;
  const p = $("#signin-error");
  p.textContent = message || "";
  p.hidden = !message;
}

$("#signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("sluice.token", $("#token").value);
  $("#token").value = "";
  start();
});
$("#signout").addEventListener("click", () => signOut());
$("#policy-select").addEventListener("change", (e) => { state.policy = e.target.value; state.key = ""; refresh(); });
$("#counter-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    await api("PUT", "/v1/counters/" + esc($("#counter-name").value), counterBody($("#counter-value").value || "0", null, null));
    $("#counter-name").value = "";
    await loadCounters();
  } catch (err) { showError(err); }
});

if (token()) start();
