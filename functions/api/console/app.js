// The Postback Explorer: one static module over the same JSON API
// (openapi.yaml). No framework, no build step, no third-party code.
// Safety rules, kept everywhere below: every value from the API goes into
// the page through text nodes (`el`, `text`), never as HTML; the key lives in
// sessionStorage (this tab only) and travels only in the Authorization header.

const KEY = "postback-explorer-key";
const state = {
  key: sessionStorage.getItem(KEY) || "",
  admin: false,
  partnerId: null,
  partners: [],
  endpoints: [],
  view: "endpoints",
  history: { items: [], next: null, retention: null, filters: null },
};

// ------------------------------------------------------------------ DOM

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "value") node.value = v;
    else if (k === "style") node.style.cssText = v; // CSSOM: allowed by the CSP, unlike a style attribute
    else if (k === "checked") node.checked = !!v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");
function clear(node) { while (node.firstChild) node.firstChild.remove(); return node; }
// Appends children the way el() does: arrays flattened, nothing for
// null/false, text as text nodes.
function put(node, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
function show(...nodes) { put(clear(main()), ...nodes); }
function toast(message) {
  const t = $("#toast");
  t.textContent = message;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 3500);
}
function pill(kind, label) { return el("span", { class: `pill ${kind}` }, label ?? kind); }
function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}
function errorBox(e) { return el("div", { class: "error", role: "alert" }, String(e.message || e)); }

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, body) {
    const err = body && body.error;
    super(err ? `${err.message}${err.field ? ` (${err.field})` : ""}` : `HTTP ${status}`);
    this.status = status;
    this.code = err && err.code;
  }
}

async function api(path, { method = "GET", body, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${state.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  if (raw) {
    if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
    return res;
  }
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    if (res.status === 401 && state.signedIn) { signOut("Your key was refused (revoked or rotated?). Sign in again."); }
    throw new ApiError(res.status, data);
  }
  return data;
}
const pid = () => encodeURIComponent(state.partnerId);

// ------------------------------------------------------------------ sign in

function signOut(message) {
  state.signedIn = false;
  state.key = "";
  state.partnerId = null;
  sessionStorage.removeItem(KEY);
  renderSignIn(message);
}

function renderSignIn(message) {
  $("#nav").hidden = true;
  clear($("#who"));
  const input = el("input", { type: "password", id: "key", autocomplete: "off", placeholder: "pbk_… or the admin key", "aria-label": "API key" });
  const problem = el("div");
  if (message) problem.append(errorBox(message));
  const form = el("form", {
    class: "panel signin", id: "signin",
    onsubmit: async (ev) => {
      ev.preventDefault();
      state.key = input.value.trim();
      clear(problem);
      try {
        await identify();
        sessionStorage.setItem(KEY, state.key);
        start();
      } catch (e) {
        state.key = "";
        problem.append(errorBox(e.status === 401 ? "That key is not valid." : e));
      }
    },
  },
    el("h1", {}, "Sign in"),
    el("p", { class: "muted" }, "With your partner key you see your own endpoints and deliveries. With the admin key you see every partner and offer. The key stays in this browser tab only."),
    el("label", { for: "key" }, "API key"), input, problem,
    el("div", { class: "row", style: "margin-top:14px" }, el("button", { class: "primary", type: "submit", id: "signin-button" }, "Sign in")),
  );
  show(form);
  input.focus();
}

async function identify() {
  // The admin lists partners; a partner key names its partner (pbk_<id>_<secret>).
  try {
    const list = await api("/partners?limit=500");
    state.admin = true;
    state.partners = list.items || [];
    state.partnerId = state.partnerId || (state.partners[0] && state.partners[0].id) || null;
    return;
  } catch (e) {
    if (e.status !== 403) throw e;
  }
  const m = /^pbk_(.+)_[^_]+$/.exec(state.key);
  if (!m) throw new ApiError(401, null);
  const partner = await api(`/partners/${encodeURIComponent(m[1])}`);
  state.admin = false;
  state.partners = [partner];
  state.partnerId = partner.id;
}

// ------------------------------------------------------------------ shell

const VIEWS = [
  ["endpoints", "Endpoints"],
  ["history", "History"],
  ["health", "Health"],
  ["operator", "Operator", true],
];

function renderShell() {
  const nav = clear($("#nav"));
  nav.hidden = false;
  for (const [id, label, adminOnly] of VIEWS) {
    if (adminOnly && !state.admin) continue;
    nav.append(el("button", { id: `nav-${id}`, "aria-current": state.view === id ? "page" : null, onclick: () => go(id) }, label));
  }
  const who = clear($("#who"));
  if (state.admin) {
    const picker = el("select", { id: "partner-picker", "aria-label": "Partner", onchange: (ev) => { state.partnerId = ev.target.value; go(state.view); } },
      state.partners.map((p) => el("option", { value: p.id, selected: p.id === state.partnerId }, `${p.name} (${p.id})`)));
    put(who, pill("ok", "admin"), state.partners.length ? picker : el("span", {}, "no partners yet"));
  } else {
    const p = state.partners[0];
    who.append(el("span", {}, p ? `${p.name}` : ""), pill("ok", "partner"));
  }
  who.append(el("button", { class: "link", style: "color:#cfd6e4", id: "signout", onclick: () => signOut() }, "Sign out"));
}

function go(view) {
  state.view = view;
  renderShell();
  const views = { endpoints: renderEndpoints, history: renderHistory, health: renderHealth, operator: renderOperator };
  (views[view] || renderEndpoints)().catch((e) => show(errorBox(e)));
}

async function start() {
  if (!state.key) return renderSignIn();
  try {
    await identify();
  } catch (e) {
    return signOut(e.status === 401 ? null : String(e.message || e));
  }
  state.signedIn = true;
  go(state.view);
}

function needPartner() {
  if (state.partnerId) return null;
  return el("div", { class: "panel" }, el("h2", {}, "No partner yet"), el("p", { class: "muted" }, "Create a partner with POST /partners, then come back."));
}

// ------------------------------------------------------------------ endpoints

async function loadEndpoints() {
  const data = await api(`/partners/${pid()}/endpoints`);
  state.endpoints = data.items || [];
  return state.endpoints;
}

async function renderEndpoints() {
  const none = needPartner();
  if (none) return show(none);
  const endpoints = await loadEndpoints();
  const cards = el("div", { class: "cards", id: "endpoint-list" });
  for (const e of endpoints) cards.append(endpointCard(e));
  show(
    el("div", { class: "row spread" }, el("h1", {}, "Endpoints"), el("button", { class: "primary", id: "new-endpoint", onclick: () => renderEndpointForm(null) }, "New endpoint")),
    endpoints.length ? cards : el("div", { class: "panel" }, el("p", {}, "No endpoint yet. A postback endpoint is where we send your conversions, in your format."), el("button", { class: "primary", onclick: () => renderEndpointForm(null) }, "Set up your first endpoint")),
  );
}

function endpointCard(e) {
  const status = e.active ? pill("active") : pill("paused");
  return el("div", { class: "card", dataset: { endpoint: e.id } },
    el("div", { class: "row spread" }, el("span", { class: "title" }, e.name), status),
    el("div", { class: "row" }, pill("method", e.method), el("span", { class: "muted mono" }, e.id)),
    el("div", { class: "url" }, e.url),
    e.paused_reason ? el("div", { class: "hint" }, `Paused: ${e.paused_reason}`) : null,
    el("div", { class: "hint" }, `Events: ${(e.events || []).join(", ") || "*"} · statuses: ${(e.statuses || []).join(", ") || "all"} · retries: ${(e.retry_schedule || []).length}`),
    el("div", { class: "row" },
      el("button", { class: "test-endpoint", onclick: () => runTest(e) }, "Test"),
      el("button", { class: "edit-endpoint", onclick: () => renderEndpointForm(e) }, "Edit"),
      el("button", { class: "toggle-endpoint", onclick: () => toggle(e) }, e.active ? "Pause" : "Resume"),
      el("button", { class: "danger delete-endpoint", onclick: () => remove(e) }, "Delete"),
    ),
  );
}

async function toggle(e) {
  try {
    await api(`/partners/${pid()}/endpoints/${encodeURIComponent(e.id)}`, { method: "PATCH", body: { active: !e.active } });
    toast(e.active ? `Paused ${e.name}: what arrives waits until you resume.` : `Resumed ${e.name}: what waited is on its way.`);
    renderEndpoints();
  } catch (err) { toast(err.message); }
}

async function remove(e) {
  if (!confirm(`Delete the endpoint "${e.name}"? Deliveries still waiting for it are cancelled.`)) return;
  try {
    await api(`/partners/${pid()}/endpoints/${encodeURIComponent(e.id)}`, { method: "DELETE" });
    toast(`Deleted ${e.name}.`);
    renderEndpoints();
  } catch (err) { toast(err.message); }
}

function dialog(...children) {
  const overlay = el("div", { class: "overlay", onclick: (ev) => { if (ev.target === overlay) overlay.remove(); } });
  const box = el("div", { class: "dialog", role: "dialog", "aria-modal": "true" }, ...children,
    el("div", { class: "row", style: "margin-top:14px" }, el("button", { class: "close-dialog", onclick: () => overlay.remove() }, "Close")));
  overlay.append(box);
  document.body.append(overlay);
  return box;
}

function requestView(req) {
  const headers = Object.entries(req.headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n");
  return el("pre", { class: "request" }, `${req.method} ${req.url}\n${headers}${req.body ? `\n\n${req.body}` : ""}`);
}

async function runTest(e) {
  const box = dialog(el("h2", {}, `Test: ${e.name}`), el("p", { class: "muted" }, "Sending a test event now…"));
  try {
    const r = await api(`/partners/${pid()}/endpoints/${encodeURIComponent(e.id)}/test`, { method: "POST" });
    const res = r.response || {};
    put(clear(box),
      el("h2", {}, `Test: ${e.name}`),
      el("div", { class: "row", id: "test-result" },
        r.success ? pill("ok", "Accepted") : pill("bad", "Not accepted"),
        el("span", {}, res.status ? `HTTP ${res.status}` : (res.error || "no answer")),
        el("span", { class: "muted" }, `${res.latency_ms ?? "?"} ms`)),
      el("h3", {}, "The request we sent (secrets masked)"), requestView(r.request),
      el("h3", {}, "Their answer"), el("pre", {}, res.body || res.detail || "(empty)"),
      (r.empty_macros || []).length ? el("p", {}, "Rendered empty: ", r.empty_macros.map((m) => el("span", { class: "chip empty" }, `{${m}}`))) : null,
      el("p", { class: "hint" }, "A test is not recorded as a delivery."),
      el("div", { class: "row", style: "margin-top:14px" }, el("button", { class: "close-dialog", onclick: () => box.parentNode.remove() }, "Close")),
    );
  } catch (err) {
    box.append(errorBox(err));
  }
}

// --------------------------------------------------- endpoint form, live preview

const WRITE_ONLY = "set — type to replace";
// A secret header's value is never sent to the browser; this stands for it
// and is sent back as null ("keep the stored value").
const SECRET_MASK = "•••• (set, write-only)";

function linesToMap(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) {
      const value = line.slice(i + 1).trim();
      out[line.slice(0, i).trim()] = value === SECRET_MASK ? null : value;
    }
  }
  return out;
}
function mapToLines(map) { return Object.entries(map || {}).map(([k, v]) => `${k}: ${v === null ? SECRET_MASK : v}`).join("\n"); }
function list(text) { return text.split(",").map((s) => s.trim()).filter(Boolean); }

async function renderEndpointForm(existing) {
  const e = existing || { method: "GET", events: ["*"], statuses: [], retry_schedule: [0, 60, 90, 120, 150], timeout_ms: 10000, active: true };
  const f = {};
  const input = (name, props = {}) => (f[name] = el("input", { type: "text", id: `f-${name}`, name, ...props }));
  const area = (name, props = {}) => (f[name] = el("textarea", { id: `f-${name}`, name, ...props }));
  const field = (label, control, hint) => el("div", { class: "field" }, el("label", { for: control.id }, label), control, hint ? el("div", { class: "hint" }, hint) : null);

  input("name", { value: e.name || "", placeholder: "main" });
  f.method = el("select", { id: "f-method" }, ["GET", "POST_FORM", "POST_JSON"].map((m) => el("option", { value: m, selected: m === e.method }, m)));
  area("url", { value: e.url || "", placeholder: "https://partner.example/pb?click={click_id}&payout={payout}" });
  area("body", { value: e.body || "", placeholder: '{"click":"{click_id}","amount":{payout}}' });
  area("headers", { value: mapToLines(e.headers), placeholder: "X-Api-Key: …" });
  input("secret_headers", { value: (e.secret_headers || []).join(", "), placeholder: "X-Api-Key" });
  input("username", { value: (e.basic_auth && e.basic_auth.username) || "" });
  f.password = el("input", { type: "password", id: "f-password", autocomplete: "new-password", placeholder: e.basic_auth && (e.basic_auth.password_set || e.basic_auth.token_set) ? WRITE_ONLY : "" });
  f.token = el("input", { type: "password", id: "f-token", autocomplete: "new-password", placeholder: e.basic_auth && e.basic_auth.token_set ? WRITE_ONLY : "instead of user and password (optional)" });
  f.secret = el("input", { type: "password", id: "f-secret", autocomplete: "new-password", placeholder: e.secret_set ? WRITE_ONLY : "whsec_… (optional)" });
  input("events", { value: (e.events || ["*"]).join(", ") });
  f.statuses = ["pending", "approved", "rejected"].map((s) => el("input", { type: "checkbox", value: s, checked: (e.statuses || []).includes(s) }));
  input("offers", { value: (e.offers || []).join(", ") });
  input("goals", { value: (e.goals || []).join(", ") });
  f.invalidations = el("input", { type: "checkbox", id: "f-invalidations", checked: e.invalidations });
  f.omit_empty = el("input", { type: "checkbox", id: "f-omit_empty", checked: e.omit_empty });
  area("rename", { value: mapToLines(e.rename), placeholder: "approved: Done" });
  input("retry_schedule", { value: (e.retry_schedule || []).join(", ") });
  f.timeout_ms = el("input", { type: "number", id: "f-timeout_ms", value: e.timeout_ms || 10000, min: 100, max: 30000 });
  f.active = el("input", { type: "checkbox", id: "f-active", checked: e.active !== false });

  const problem = el("div");
  const preview = el("div", { id: "preview" }, el("p", { class: "muted" }, "The preview appears as you type."));
  const macros = el("div", { id: "macros" });
  const sample = el("select", { id: "preview-event", "aria-label": "Preview with" }, el("option", { value: "" }, "a sample event"));
  let lastTemplate = f.url;
  for (const t of [f.url, f.body, f.headers]) t.addEventListener("focus", () => { lastTemplate = t; });

  function spec() {
    const body = {
      name: f.name.value.trim(), method: f.method.value, url: f.url.value.trim(),
      headers: linesToMap(f.headers.value), secret_headers: list(f.secret_headers.value),
      events: list(f.events.value), statuses: f.statuses.filter((c) => c.checked).map((c) => c.value),
      offers: list(f.offers.value), goals: list(f.goals.value), invalidations: f.invalidations.checked,
      omit_empty: f.omit_empty.checked, rename: linesToMap(f.rename.value.replace(/=/g, ":")),
      retry_schedule: list(f.retry_schedule.value).map(Number), timeout_ms: Number(f.timeout_ms.value), active: f.active.checked,
    };
    if (f.method.value !== "GET" && f.body.value.trim()) body.body = f.body.value;
    if (f.secret.value) body.secret = f.secret.value;
    if (f.token.value) {
      body.basic_auth = { token: f.token.value };
    } else if (f.username.value.trim() || f.password.value) {
      body.basic_auth = { username: f.username.value.trim() };
      if (f.password.value) body.basic_auth.password = f.password.value;
    }
    return body;
  }

  // An edit sends only what changed (PATCH), so write-only values and
  // fields nobody touched are kept as stored.
  const initial = Object.fromEntries(Object.entries(spec()).map(([k, v]) => [k, JSON.stringify(v)]));
  const changes = () => Object.fromEntries(Object.entries(spec()).filter(([k, v]) => initial[k] !== JSON.stringify(v)));

  let timer = null;
  async function refreshPreview() {
    const body = existing ? changes() : spec();
    if (existing) body.endpoint_id = existing.id;
    if (sample.value) body.event_id = sample.value;
    try {
      const r = await api(`/partners/${pid()}/endpoints/preview`, { method: "POST", body });
      put(clear(macros),el("div", { class: "hint" }, "Macros (click to insert):"), (r.macros || []).map((m) =>
        el("span", { class: "chip", onclick: () => insertMacro(lastTemplate, m) }, `{${m}}`)));
      put(clear(preview),requestView(r.request),
        (r.empty_macros || []).length
          ? el("p", {}, "Rendered empty with this event: ", r.empty_macros.map((m) => el("span", { class: "chip empty" }, `{${m}}`)))
          : el("p", { class: "hint" }, "No macro rendered empty."));
    } catch (err) {
      put(clear(preview),errorBox(err));
    }
  }
  const schedule = () => { clearTimeout(timer); timer = setTimeout(refreshPreview, 250); };
  for (const c of Object.values(f).flat()) c.addEventListener("input", schedule);
  sample.addEventListener("change", schedule);

  const save = el("button", { class: "primary", id: "save-endpoint", type: "submit" }, existing ? "Save changes" : "Create endpoint");
  const form = el("form", {
    class: "panel", id: "endpoint-form",
    onsubmit: async (ev) => {
      ev.preventDefault();
      clear(problem);
      save.disabled = true;
      try {
        const body = existing ? changes() : spec();
        const saved = existing
          ? await api(`/partners/${pid()}/endpoints/${encodeURIComponent(existing.id)}`, { method: "PATCH", body })
          : await api(`/partners/${pid()}/endpoints`, { method: "POST", body });
        toast(existing ? `Saved ${saved.name}.` : `Created ${saved.name}. Send it a test to check it.`);
        renderEndpoints();
      } catch (err) {
        problem.append(errorBox(err));
      } finally {
        save.disabled = false;
      }
    },
  },
    field("Name", f.name),
    field("Method", f.method, "GET puts everything in the URL; POST_FORM and POST_JSON send a body."),
    field("URL template", f.url, "Macros in braces: {click_id}, {payout}, {sub1|default}…"),
    field("Body template", f.body, "For POST: leave empty to send the standard fields."),
    field("Headers", f.headers, "One per line: Name: value"),
    field("Secret headers", f.secret_headers, "Names whose values are secrets: never shown again, masked in tests."),
    el("div", { class: "row" }, el("div", { style: "flex:1" }, field("Basic auth user", f.username)), el("div", { style: "flex:1" }, field("Basic auth password", f.password))),
    field("Basic auth token", f.token, "A ready-made credential sent as Authorization: Basic <token>. Write-only."),
    field("Signing secret", f.secret, "Standard Webhooks signature (webhook-signature). Write-only."),
    field("Events", f.events, "Comma-separated event names, * for all."),
    el("label", {}, "Statuses (none ticked: all)"),
    el("div", { class: "row" }, f.statuses.map((c) => el("label", { class: "inline" }, c, c.value))),
    field("Offers", f.offers, "Offer ids, comma-separated; empty for all."),
    field("Goals", f.goals, "Empty for all."),
    el("div", { class: "row", style: "margin-top:10px" },
      el("label", { class: "inline" }, f.invalidations, "Send invalidations"),
      el("label", { class: "inline" }, f.omit_empty, "Omit empty fields"),
      el("label", { class: "inline" }, f.active, "Active")),
    field("Rename", f.rename, "Your words for ours, one per line: approved: Done"),
    el("div", { class: "row" }, el("div", { style: "flex:2" }, field("Retry schedule (seconds)", f.retry_schedule)), el("div", { style: "flex:1" }, field("Timeout (ms)", f.timeout_ms))),
    problem,
    el("div", { class: "row", style: "margin-top:14px" }, save, el("button", { type: "button", onclick: () => renderEndpoints() }, "Cancel")),
  );
  show(
    el("h1", {}, existing ? `Edit ${existing.name}` : "New endpoint"),
    el("div", { class: "grid2" }, form,
      el("div", { class: "panel", id: "preview-panel" }, el("h2", {}, "Preview"), el("div", { class: "row" }, el("span", { class: "muted" }, "Rendered with"), sample), macros, preview)),
  );
  // Real recent events to preview with.
  api(`/partners/${pid()}/deliveries?limit=20`).then((h) => {
    const seen = new Set();
    for (const d of h.items || []) {
      if (seen.has(d.event_id)) continue;
      seen.add(d.event_id);
      sample.append(el("option", { value: d.event_id }, `${d.event} ${d.transaction_id || d.event_id} (${when(d.event_time)})`));
    }
  }).catch(() => {});
  refreshPreview();
}

function insertMacro(target, name) {
  const text = `{${name}}`;
  const at = target.selectionStart ?? target.value.length;
  target.value = target.value.slice(0, at) + text + target.value.slice(target.selectionEnd ?? at);
  target.focus();
  target.dispatchEvent(new Event("input"));
}

// ------------------------------------------------------------------ history

function day(d) { return d.toISOString().slice(0, 10); }
function presets() {
  const now = new Date();
  const today = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
  const minus = (n) => new Date(today.getTime() - n * 86400000);
  const monthStart = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), 1));
  const lastMonthStart = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - 1, 1));
  const lastMonthEnd = new Date(monthStart.getTime() - 86400000);
  return {
    today: ["Today", day(today), day(today)],
    last7: ["Last 7 days", day(minus(6)), day(today)],
    last30: ["Last 30 days", day(minus(29)), day(today)],
    month: ["This month", day(monthStart), day(today)],
    lastmonth: ["Last month", day(lastMonthStart), day(lastMonthEnd)],
  };
}

function historyQuery(filters, extra = {}) {
  const q = new URLSearchParams();
  if (filters.from) q.set("from", filters.from);
  if (filters.to) q.set("to", filters.to);
  if (filters.status) q.set("status", filters.status);
  if (filters.endpoint) q.set("endpoint_id", filters.endpoint);
  if (filters.time === "event") q.set("time", "event");
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return q.toString();
}

async function renderHistory() {
  const none = needPartner();
  if (none) return show(none);
  if (!state.endpoints.length) await loadEndpoints().catch(() => {});
  const p = presets();
  const filters = state.history.filters || { preset: "last7", from: p.last7[1], to: p.last7[2], status: "", endpoint: "", time: "delivery" };
  state.history.filters = filters;
  const from = el("input", { type: "date", id: "h-from", value: filters.from, "aria-label": "From" });
  const to = el("input", { type: "date", id: "h-to", value: filters.to, "aria-label": "To" });
  const preset = el("select", { id: "h-preset", "aria-label": "Date range" },
    Object.entries(p).map(([k, [label]]) => el("option", { value: k, selected: filters.preset === k }, label)),
    el("option", { value: "custom", selected: filters.preset === "custom" }, "Custom range"));
  const status = el("select", { id: "h-status", "aria-label": "Status" }, ["", "delivered", "failed", "pending", "cancelled"].map((s) => el("option", { value: s, selected: filters.status === s }, s || "Any status")));
  const endpoint = el("select", { id: "h-endpoint", "aria-label": "Endpoint" }, el("option", { value: "" }, "Every endpoint"),
    state.endpoints.map((e) => el("option", { value: e.id, selected: filters.endpoint === e.id }, e.name)));
  const basis = el("select", { id: "h-time", "aria-label": "Time" }, el("option", { value: "delivery", selected: filters.time !== "event" }, "by delivery time"), el("option", { value: "event", selected: filters.time === "event" }, "by event time"));
  const apply = () => {
    Object.assign(filters, { from: from.value, to: to.value, status: status.value, endpoint: endpoint.value, time: basis.value });
    loadHistory(true);
  };
  preset.addEventListener("change", () => {
    filters.preset = preset.value;
    if (p[preset.value]) { from.value = p[preset.value][1]; to.value = p[preset.value][2]; }
    apply();
  });
  for (const c of [from, to]) c.addEventListener("change", () => { filters.preset = "custom"; preset.value = "custom"; apply(); });
  for (const c of [basis]) c.addEventListener("change", apply);
  // The status and endpoint decide whether "Resend all failed" is offered: redraw.
  for (const c of [status, endpoint]) c.addEventListener("change", () => {
    Object.assign(filters, { from: from.value, to: to.value, status: status.value, endpoint: endpoint.value, time: basis.value });
    renderHistory();
  });

  const chosen = state.endpoints.find((e) => e.id === filters.endpoint);
  const recoverButton = filters.status === "failed"
    ? el("button", { id: "history-recover", disabled: !chosen, title: chosen ? null : "Choose an endpoint first",
        onclick: () => chosen && recoverDialog(chosen, new Date(`${filters.from || day(new Date())}T00:00:00Z`)) },
        chosen ? `Resend all failed since ${filters.from || "today"}` : "Resend all failed (choose an endpoint)")
    : null;
  const tbody = el("tbody", { id: "history-rows" });
  const more = el("button", { id: "history-more", onclick: () => loadHistory(false) }, "Load more");
  const note = el("p", { class: "hint", id: "history-note" });
  show(
    el("div", { class: "row spread" }, el("h1", {}, "Delivery history"),
      el("div", { class: "row" },
        recoverButton,
        el("button", { id: "history-refresh", onclick: () => loadHistory(true) }, "Refresh"),
        el("button", { class: "primary", id: "history-csv", onclick: () => downloadCsv(filters) }, "Download CSV"))),
    el("div", { class: "panel row", id: "history-filters" }, preset, from, el("span", { class: "muted" }, "to"), to, status, endpoint, basis),
    el("div", { class: "panel tablewrap" },
      el("table", {}, el("thead", {}, el("tr", {}, ["Time", "Event", "Transaction", "Payout", "Endpoint", "Status", "Code", "Tries"].map((h, i) => el("th", { class: i === 2 || i === 4 ? "hide-narrow" : null }, h)))), tbody),
      el("div", { class: "row", style: "margin-top:10px" }, more), note),
  );

  // Filters can change faster than pages arrive: only the newest request's
  // answer is shown.
  let generation = 0;
  async function loadHistory(reset) {
    const mine = ++generation;
    if (reset) { state.history.items = []; state.history.next = null; clear(tbody); }
    const extra = { limit: "50" };
    if (!reset && state.history.next) extra.cursor = state.history.next;
    try {
      const page = await api(`/partners/${pid()}/deliveries?${historyQuery(filters, extra)}`);
      if (mine !== generation) return;
      state.history.next = page.next_cursor || null;
      state.history.retention = page.retention_days;
      for (const d of page.items || []) { state.history.items.push(d); tbody.append(historyRow(d)); }
      more.hidden = !state.history.next;
      note.textContent = `${state.history.items.length} shown, newest first.` +
        (page.retention_days ? ` History goes back ${page.retention_days} days.` : "");
      if (!state.history.items.length) tbody.append(el("tr", {}, el("td", { colspan: "8", class: "muted" }, "Nothing in this range.")));
    } catch (err) {
      tbody.append(el("tr", {}, el("td", { colspan: "8" }, errorBox(err))));
    }
  }
  await loadHistory(true);
}

function endpointName(id) {
  const e = state.endpoints.find((x) => x.id === id);
  return e ? e.name : id;
}

function historyRow(d) {
  return el("tr", { class: "clickable", dataset: { delivery: d.delivery_id }, onclick: () => openDelivery(d) },
    el("td", {}, when(d.time)),
    el("td", {}, d.event, " ", el("span", { class: "muted" }, d.event_status)),
    el("td", { class: "hide-narrow mono" }, d.transaction_id || ""),
    el("td", {}, `${d.payout} ${d.currency}`),
    el("td", { class: "hide-narrow" }, endpointName(d.endpoint_id)),
    el("td", {}, pill(d.status), d.recovery_id ? el("span", { class: "hint", title: d.recovery_id }, " recovered") : null),
    el("td", {}, d.last_http_code ?? d.last_error ?? ""),
    el("td", {}, String((d.attempts || []).length)));
}

async function openDelivery(d) {
  const started = (a) => a.recovery_id ? el("span", { class: "pill warn", title: a.recovery_id }, "recovery")
    : a.manual ? el("span", { class: "pill method" }, "manual") : "";
  const attempts = el("tbody", {}, (d.attempts || []).map((a) => el("tr", {},
    el("td", {}, when(a.at)), el("td", {}, a.code ?? ""), el("td", {}, a.ms != null ? `${a.ms} ms` : ""),
    el("td", {}, a.error ?? ""), el("td", {}, started(a)), el("td", { class: "mono" }, a.response ?? ""))));
  const rendered = el("div", {}, el("p", { class: "muted" }, "Rendering…"));
  const retry = d.status === "failed"
    ? el("button", { class: "primary", id: "retry-delivery", onclick: async () => {
        try {
          await api(`/deliveries/${encodeURIComponent(d.delivery_id)}/retry`, { method: "POST" });
          toast("Retry queued: a new round on the endpoint's schedule.");
          document.querySelector(".overlay")?.remove();
          renderHistory();
        } catch (err) { toast(err.message); }
      } }, "Retry delivery")
    : null;
  dialog(
    el("div", { class: "row spread" }, el("h2", {}, `Delivery ${d.delivery_id}`), pill(d.status)),
    el("div", { class: "kv" },
      el("div", {}, "Event"), el("div", {}, `${d.event} (${d.event_status})`),
      el("div", {}, "Event time"), el("div", {}, when(d.event_time)),
      el("div", {}, "Delivery time"), el("div", {}, when(d.time)),
      el("div", {}, "Transaction"), el("div", {}, d.transaction_id || ""),
      el("div", {}, "Click"), el("div", {}, d.click_id || ""),
      el("div", {}, "Offer"), el("div", {}, `${d.offer_id || ""} ${d.advertiser ? `(${d.advertiser})` : ""}`),
      el("div", {}, "Payout"), el("div", {}, `${d.payout} ${d.currency}`),
      el("div", {}, "Endpoint"), el("div", {}, endpointName(d.endpoint_id)),
      d.next_attempt_at ? el("div", {}, "Next attempt") : null, d.next_attempt_at ? el("div", {}, when(d.next_attempt_at)) : null,
      d.reason ? el("div", {}, "Reason") : null, d.reason ? el("div", {}, d.reason) : null),
    el("h3", {}, "Attempts"),
    el("div", { class: "tablewrap" }, el("table", {}, el("thead", {}, el("tr", {}, ["Time", "Code", "Latency", "Error", "Round", "Start of the answer"].map((h) => el("th", {}, h)))), attempts)),
    el("h3", {}, "The request, as the endpoint renders it now"), rendered,
    retry ? el("div", { class: "row", style: "margin-top:12px" }, retry) : null,
  );
  try {
    const r = await api(`/partners/${pid()}/endpoints/preview`, { method: "POST", body: { endpoint_id: d.endpoint_id, event_id: d.event_id } });
    put(clear(rendered),requestView(r.request));
  } catch (err) {
    put(clear(rendered),errorBox(err));
  }
}

async function downloadCsv(filters) {
  try {
    const res = await api(`/partners/${pid()}/deliveries?${historyQuery(filters, { format: "csv" })}`, { raw: true });
    const blob = await res.blob();
    const a = el("a", { href: URL.createObjectURL(blob), download: `deliveries-${state.partnerId}-${filters.from || "all"}-${filters.to || "now"}.csv` });
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    toast("CSV downloaded: exactly the filtered range.");
  } catch (err) { toast(err.message); }
}

// ------------------------------------------------------------------ health

// ------------------------------------------------------------- recover

// "Resend all failed since …": the count first (a dry run), then the
// recovery, then its progress until every resent delivery has ended.
function localInput(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

function recoverDialog(e, since) {
  const sinceInput = el("input", { type: "datetime-local", id: "recover-since", value: localInput(since), "aria-label": "Since (UTC)" });
  const rate = el("input", { type: "number", id: "recover-rate", min: "1", max: "200", value: "20", "aria-label": "Per second at most" });
  const count = el("p", { id: "recover-count", class: "muted" }, "Counting…");
  const confirmButton = el("button", { class: "primary", id: "recover-confirm", disabled: true }, "Resend");
  const progress = el("div", { id: "recover-progress" });
  const body = () => ({ since: `${sinceInput.value}:00Z`, rate_per_second: Number(rate.value) || 20 });
  const path = `/partners/${pid()}/endpoints/${encodeURIComponent(e.id)}/recover`;
  async function recount() {
    confirmButton.disabled = true;
    count.textContent = "Counting…";
    try {
      const r = await api(path, { method: "POST", body: { ...body(), dry_run: true } });
      count.textContent = `${r.to_resend}${r.to_resend_complete ? "" : "+"} failed ${r.to_resend === 1 ? "delivery" : "deliveries"} of "${e.name}" since ${when(r.since)} will be sent again, oldest first, at most ${r.rate_per_second} a second. Each keeps its idempotency key; a change the partner already got a later state of is skipped.`;
      confirmButton.disabled = r.to_resend === 0;
      confirmButton.textContent = r.to_resend ? `Resend ${r.to_resend}` : "Nothing to resend";
    } catch (err) { put(clear(count), errorBox(err)); }
  }
  sinceInput.addEventListener("change", recount);
  rate.addEventListener("change", recount);
  confirmButton.addEventListener("click", async () => {
    confirmButton.disabled = true;
    try {
      const r = await api(path, { method: "POST", body: body() });
      follow(`${path}/${encodeURIComponent(r.recovery_id)}`, r);
    } catch (err) { put(clear(progress), errorBox(err)); }
  });
  function draw(r) {
    const ended = r.delivered + r.failed + (r.cancelled || 0);
    put(clear(progress),
      el("div", { class: "row" }, pill(r.state === "finished" ? (r.failed ? "bad" : "ok") : "warn", r.state), el("span", { class: "mono hint" }, r.recovery_id)),
      el("p", {}, `Queued ${r.queued} of ${r.to_resend} · sent ${r.sent} · delivered ${r.delivered} · failed again ${r.failed}` +
        (r.cancelled ? ` · superseded or cancelled ${r.cancelled}` : "")),
      el("progress", { max: String(Math.max(r.to_resend, r.queued, 1)), value: String(ended), "aria-label": "Ended" }),
      r.skipped.later_change || r.skipped.changed
        ? el("p", { class: "hint" }, `Skipped: ${r.skipped.later_change} already replaced by a later change, ${r.skipped.changed} changed meanwhile.`) : null);
  }
  async function follow(url, first) {
    draw(first);
    for (;;) {
      await new Promise((done) => setTimeout(done, 1000));
      if (!progress.isConnected) return;
      try {
        const r = await api(url);
        draw(r);
        if (r.state === "finished") {
          toast(`Recovery finished: ${r.delivered} delivered, ${r.failed} failed again.`);
          if (state.view === "health") renderHealth();
          return;
        }
      } catch (err) { put(progress, errorBox(err)); return; }
    }
  }
  dialog(
    el("h2", {}, `Resend all failed: ${e.name}`),
    el("div", { class: "row" }, el("label", {}, "Since (UTC) ", sinceInput), el("label", {}, "Per second at most ", rate)),
    count,
    el("div", { class: "row" }, confirmButton),
    progress,
  );
  recount();
}

async function renderHealth() {
  const none = needPartner();
  if (none) return show(none);
  const endpoints = await loadEndpoints();
  const since = new Date(Date.now() - 24 * 3600 * 1000);
  const rows = [];
  let cursor = null;
  for (let page = 0; page < 4; page++) {
    const q = new URLSearchParams({ from: since.toISOString(), limit: "500" });
    if (cursor) q.set("cursor", cursor);
    const data = await api(`/partners/${pid()}/deliveries?${q}`);
    rows.push(...(data.items || []));
    cursor = data.next_cursor;
    if (!cursor) break;
  }
  const cards = el("div", { class: "cards", id: "health" });
  for (const e of endpoints) {
    const mine = rows.filter((d) => d.endpoint_id === e.id);
    const delivered = mine.filter((d) => d.status === "delivered");
    const failed = mine.filter((d) => d.status === "failed");
    const lastOk = delivered.map((d) => (d.attempts || []).at(-1)?.at || d.updated_at).sort().at(-1);
    cards.append(el("div", { class: "card", dataset: { endpoint: e.id } },
      el("div", { class: "row spread" }, el("span", { class: "title" }, e.name), e.active ? pill("active") : pill("paused")),
      el("div", { class: "row", style: "gap:24px" },
        el("div", {}, el("div", { class: "stat ok-count" }, String(delivered.length)), el("div", { class: "hint" }, "delivered")),
        el("div", {}, el("div", { class: "stat fail-count" }, String(failed.length)), el("div", { class: "hint" }, "failed")),
        el("div", {}, el("div", { class: "stat" }, String(mine.length - delivered.length - failed.length)), el("div", { class: "hint" }, "pending or cancelled"))),
      chart(mine, since),
      el("div", { class: "legend" }, "Last 24 hours, by hour", el("span", { class: "ld" }, "delivered"), el("span", { class: "lf" }, "failed")),
      el("div", { class: "hint" }, lastOk ? `Last success ${when(lastOk)}` : "No success in the last 24 hours"),
      el("div", { class: "row" }, el("button", { class: "recover", onclick: () => recoverDialog(e, since) }, "Resend all failed since…")),
    ));
  }
  show(el("h1", {}, "Health, last 24 hours"), endpoints.length ? cards : el("p", { class: "muted" }, "No endpoint yet."));
}

function chart(rows, since) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 240 64");
  svg.setAttribute("class", "chart");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const buckets = Array.from({ length: 24 }, () => ({ d: 0, f: 0 }));
  for (const r of rows) {
    const h = Math.floor((new Date(r.time) - since) / 3600000);
    if (h < 0 || h > 23) continue;
    if (r.status === "delivered") buckets[h].d++;
    if (r.status === "failed") buckets[h].f++;
  }
  const max = Math.max(1, ...buckets.map((b) => b.d + b.f));
  buckets.forEach((b, i) => {
    const x = i * 10 + 1;
    const hd = (b.d / max) * 60, hf = (b.f / max) * 60;
    for (const [cls, h, y] of [["d", hd, 62 - hd], ["f", hf, 62 - hd - hf]]) {
      if (h <= 0) continue;
      const rect = document.createElementNS(NS, "rect");
      rect.setAttribute("x", x); rect.setAttribute("y", y); rect.setAttribute("width", 8); rect.setAttribute("height", h);
      rect.setAttribute("class", cls);
      svg.append(rect);
    }
  });
  const base = document.createElementNS(NS, "line");
  base.setAttribute("x1", 0); base.setAttribute("x2", 240); base.setAttribute("y1", 62.5); base.setAttribute("y2", 62.5); base.setAttribute("class", "base");
  svg.append(base);
  const title = document.createElementNS(NS, "title");
  title.textContent = `${rows.length} deliveries in the last 24 hours`;
  svg.append(title);
  return svg;
}

// ------------------------------------------------------------------ operator

async function renderOperator() {
  const [offers, partners, deliveryDlq, eventsDlq] = await Promise.all([
    api("/offers?limit=200"), api("/partners?limit=500"),
    api("/admin/dead-letters?queue=deliveries").catch((e) => ({ error: e })),
    api("/admin/dead-letters?queue=events").catch((e) => ({ error: e })),
  ]);
  state.partners = partners.items || [];
  const postbacks = el("div", { id: "offer-postbacks" });
  const offerPicker = el("select", { id: "offer-picker", "aria-label": "Offer", onchange: async (ev) => {
    clear(postbacks);
    if (!ev.target.value) return;
    const r = await api(`/offers/${encodeURIComponent(ev.target.value)}/postbacks`).catch((e) => ({ error: e }));
    if (r.error) return postbacks.append(errorBox(r.error));
    postbacks.append(table(["Affiliate", "Endpoint", "Method", "URL", "Active"], (r.items || []).map((p) => [p.affiliate, p.name, p.method, el("span", { class: "url" }, p.url), p.active ? pill("active") : pill("paused")])));
  } }, el("option", { value: "" }, "Choose an offer"), (offers.items || []).map((o) => el("option", { value: o.id }, `${o.name} (${o.id})`)));

  // Stuck or overdue: pending deliveries whose next attempt is more than 5 minutes late, for the chosen partner.
  let stuck = [];
  if (state.partnerId) {
    const h = await api(`/partners/${pid()}/deliveries?status=pending&limit=200`).catch(() => ({ items: [] }));
    const late = Date.now() - 5 * 60 * 1000;
    stuck = (h.items || []).filter((d) => d.parked || (d.next_attempt_at && new Date(d.next_attempt_at) < late));
  }
  const dlq = (name, r) => el("div", { class: "panel" }, el("div", { class: "row spread" }, el("h2", {}, `Dead letters: ${name === "deliveries" ? "delivery" : name} queue`),
      r.error ? null : el("button", { class: "redrive", onclick: async () => {
        try { const out = await api(`/admin/dead-letters/redrive?queue=${name}`, { method: "POST" }); toast(`Moved back ${out.redriven ?? 0} message(s).`); renderOperator(); } catch (e) { toast(e.message); }
      } }, "Re-drive all")),
    r.error ? errorBox(r.error) : (r.items || []).length
      ? table(["Sent", "Reason", "Body"], r.items.map((m) => [m.sent_at_ms ? when(new Date(m.sent_at_ms).toISOString()) : "", m.reason || "", el("span", { class: "mono" }, m.body || "")]))
      : el("p", { class: "muted" }, "Empty."));
  show(
    el("h1", {}, "Operator"),
    el("div", { class: "grid2" },
      el("div", { class: "panel" }, el("h2", {}, `Offers (${(offers.items || []).length})`), table(["Id", "Name", "Advertiser", "Payout"], (offers.items || []).map((o) => [el("span", { class: "mono" }, o.id), o.name, o.advertiser, `${o.default_payout ?? ""} ${o.currency ?? ""}`]))),
      el("div", { class: "panel" }, el("h2", {}, `Partners (${state.partners.length})`), table(["Id", "Name", "Since"], state.partners.map((p) => [
        el("button", { class: "link", onclick: () => { state.partnerId = p.id; go("endpoints"); } }, p.id), p.name, when(p.created_at)])))),
    el("div", { class: "panel" }, el("h2", {}, "Every postback of an offer"), offerPicker, postbacks),
    el("div", { class: "panel", id: "stuck" }, el("h2", {}, `Stuck or overdue (${state.partnerId || "no partner"})`),
      stuck.length ? table(["Delivery", "Event", "Next attempt", "Reason"], stuck.map((d) => [el("span", { class: "mono" }, d.delivery_id), d.event, when(d.next_attempt_at), d.reason || (d.parked ? "parked" : "")]))
        : el("p", { class: "muted" }, "Nothing stuck for this partner.")),
    dlq("deliveries", deliveryDlq), dlq("events", eventsDlq),
  );
}

function table(headers, rows) {
  return el("div", { class: "tablewrap" }, el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c ?? "")))))));
}

start();
