// herd's live view: renders the view the server sends as server-sent
// events (/api/v1/events). Everything a machine says is put in the page
// as text, never as markup.
"use strict";
(function () {
  const states = ["waiting", "booting", "registered", "receiving", "writing", "verified", "local", "ko", "discovered"];
  const $ = (id) => document.getElementById(id);
  let view = null;
  const cards = new Map(); // id -> card element

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function size(b) {
    if (b < 0) return "?";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return (i ? b.toFixed(1) : b) + " " + u[i];
  }
  function dur(s) {
    if (s < 0) return "?";
    s = Math.round(s);
    const m = Math.floor(s / 60), h = Math.floor(m / 60);
    return h ? h + "h" + String(m % 60).padStart(2, "0") + "m" : m ? m + "m" + String(s % 60).padStart(2, "0") + "s" : s + "s";
  }
  function label(m) { return m.name || m.mac || m.addr || m.id; }

  const sel = $("state-filter");
  for (const s of states) { const o = el("option", "", s); o.value = s; sel.appendChild(o); }

  function spark(values) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 60 18");
    svg.setAttribute("preserveAspectRatio", "none");
    if (values && values.length > 1) {
      const max = Math.max(...values, 1);
      const pts = values.map((v, i) => (i * 60 / (values.length - 1)).toFixed(1) + "," + (17 - 16 * v / max).toFixed(1));
      const pl = document.createElementNS(ns, "polyline");
      pl.setAttribute("points", pts.join(" "));
      svg.appendChild(pl);
    }
    return svg;
  }

  function card(m) {
    let c = cards.get(m.id);
    if (!c) {
      c = el("div", "m");
      c.dataset.id = m.id;
      c.tabIndex = 0;
      c.addEventListener("click", () => showLog(c.dataset.id));
      c.addEventListener("keydown", (e) => { if (e.key === "Enter") showLog(c.dataset.id); });
      cards.set(m.id, c);
    }
    c.dataset.state = m.state;
    c.replaceChildren();
    c.appendChild(el("div", "n", label(m)));
    const where = m.position ? "#" + m.position + (m.place && m.place !== "chain" ? " " + m.place : "") : (m.place || "");
    c.appendChild(el("div", "s", m.state + (where ? " · " + where : "") + " · " + size(m.bytes) + (m.rate > 0 ? " · " + size(m.rate) + "/s" : "")));
    if (m.reason) c.appendChild(el("div", "r", m.reason));
    c.appendChild(spark(m.spark));
    c.title = [m.name, m.mac, m.addr, m.state, m.reason].filter(Boolean).join("\n");
    return c;
  }

  function matches(m) {
    const q = $("filter").value.trim().toLowerCase();
    const st = sel.value;
    if ($("only-failed").checked && m.state !== "ko") return false;
    if (st && m.state !== st) return false;
    if (!q) return true;
    return [m.name, m.mac, m.addr, m.id, m.reason, m.state].some((f) => f && f.toLowerCase().includes(q));
  }

  function render() {
    if (!view) return;
    const v = view;
    $("kind").textContent = v.kind;
    $("chain").textContent = v.chain ? "· " + v.chain : "";
    const st = $("status");
    if (v.running) { st.textContent = "running"; st.className = "status"; }
    else if (v.ok) { st.textContent = "finished: every machine made it"; st.className = "status ok"; }
    else { st.textContent = "finished: some machines failed"; st.className = "status ko"; }
    st.dataset.running = v.running;
    const pct = v.total > 0 ? Math.min(100, 100 * v.sent / v.total) : 0;
    $("bar-fill").style.width = pct.toFixed(1) + "%";
    $("numbers").textContent = size(v.sent) + " of " + size(v.total) + " sent · " + size(v.rate) + "/s · " +
      dur(v.elapsed) + " elapsed" + (v.running && v.eta >= 0 ? " · " + dur(v.eta) + " left" : "") +
      " · " + v.bypasses + " bypassed, " + v.moves + " moved, " + v.rejoins + " rejoined";
    const counts = $("counts");
    counts.replaceChildren();
    for (const s of states) {
      if (!v.counts[s]) continue;
      const sp = el("span");
      sp.dataset.state = s;
      const d = el("span", "dot");
      d.style.background = "var(--" + s + ")";
      sp.append(d, s + " " + v.counts[s]);
      counts.appendChild(sp);
    }
    const byID = new Map(v.machines.map((m) => [m.id, m]));
    const route = $("route");
    route.replaceChildren(el("span", "hop", "source"));
    for (const id of v.route) {
      const m = byID.get(id);
      route.appendChild(el("span", "arrow", "→"));
      const hop = el("span", "hop" + (m && m.place && m.place !== "chain" ? " " + m.place : ""), m ? label(m) : id);
      if (m) hop.style.background = "var(--" + m.state + ")";
      route.appendChild(hop);
    }
    const grid = $("grid");
    const want = [];
    for (const m of v.machines) {
      const c = card(m);
      if (matches(m)) want.push(c);
    }
    for (const [id, c] of cards) if (!byID.has(id)) cards.delete(id);
    grid.replaceChildren(...want);
    $("shown").textContent = want.length + " of " + v.machines.length + " shown";
    const fl = $("failures");
    fl.replaceChildren();
    for (const f of v.failures) {
      const li = el("li");
      li.dataset.id = f.id;
      const who = el("span", "who", f.name || f.id);
      who.addEventListener("click", () => showLog(f.id));
      li.append(who, el("span", "reason", f.reason));
      fl.appendChild(li);
    }
    if (!v.failures.length) fl.appendChild(el("li", "none", "none"));
  }

  async function showLog(id) {
    const m = view && view.machines.find((x) => x.id === id);
    $("log-name").textContent = m ? label(m) : id;
    $("log-panel").hidden = false;
    try {
      const r = await fetch("/api/v1/machines/" + encodeURIComponent(id) + "/log");
      $("log").textContent = r.ok ? (await r.text()) || "(empty)" : "no log: " + r.status;
    } catch (e) {
      $("log").textContent = "no log: " + e;
    }
  }
  $("log-close").addEventListener("click", () => { $("log-panel").hidden = true; });
  for (const id of ["filter", "state-filter", "only-failed"]) $(id).addEventListener("input", render);

  function connect() {
    const es = new EventSource("/api/v1/events");
    es.addEventListener("view", (e) => { view = JSON.parse(e.data); render(); });
    es.onerror = () => {
      if (view && !view.running) { es.close(); return; }
      $("status").textContent = "disconnected, retrying…";
    };
  }
  connect();
})();
