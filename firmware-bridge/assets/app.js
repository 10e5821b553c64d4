// owlet's web page: the cameras live (server-sent events), the timeline and
// search (the JSON API), questions whose answers stream in, label sets.
// No framework and nothing fetched from elsewhere: the bridge serves this file
// from its binary, and the page must work with no internet.
"use strict";

const api = (path) => fetch(path, { credentials: "same-origin" });

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

function when(ms) {
  if (!ms) return "";
  return new Date(ms).toLocaleString();
}

// The error an API reply carries, or its status.
async function failure(r) {
  try {
    const j = await r.json();
    if (j.error) return j.error;
  } catch (_) { /* not JSON */ }
  return `${r.status} ${r.statusText}`;
}

// ---- the cameras ----------------------------------------------------------

function showCamera(view) {
  const card = document.querySelector(`section.camera[data-camera="${CSS.escape(view.camera)}"]`);
  if (!card) { location.reload(); return; } // a camera the page does not know
  const latest = view.latest;
  if (latest) {
    const img = card.querySelector("img.snapshot");
    img.src = `/api/cameras/${encodeURIComponent(view.camera)}/snapshot?t=${latest.time_ms}`;
    img.hidden = false;
    card.querySelector(".no-frame").hidden = true;
    card.querySelector(".caption").textContent = latest.caption || "";
    const t = card.querySelector("time.when");
    t.dataset.ms = latest.time_ms;
    t.textContent = `${when(latest.time_ms)} · ${latest.trigger}`;
    const like = card.querySelector("a.like");
    if (like && latest.frame_id != null) {
      like.href = `/search?like=${latest.frame_id}`;
      like.hidden = false;
    }
    const list = card.querySelector("ol.labels");
    list.replaceChildren(...latest.labels.slice(0, 5).map(([label, score]) =>
      el("li", {}, el("span", { class: "label", text: label }), " ",
        el("span", { class: "score", text: score.toFixed(2) }),
        el("meter", { min: 0, max: 1, value: score }))));
  }
  const editor = card.querySelector(".label-editor textarea");
  if (document.activeElement !== editor) editor.value = view.label_set.join("\n");
  card.dataset.labelSet = JSON.stringify(view.label_set);
}

function followCameras() {
  const status = document.getElementById("connection");
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => { status.textContent = "live"; status.dataset.state = "live"; });
  events.addEventListener("error", () => { status.textContent = "reconnecting…"; status.dataset.state = "lost"; });
  events.addEventListener("camera", (e) => showCamera(JSON.parse(e.data)));
}

// Server-sent events from a POST (EventSource only GETs): read the body as it
// comes and hand each complete event to `on(name, data)`.
async function postForEvents(path, body, on) {
  const r = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!r.ok) { on("error", { error: await failure(r) }); return; }
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
      }
      if (data) on(name, JSON.parse(data));
    }
  }
}

function wireCameraForms() {
  for (const card of document.querySelectorAll("section.camera")) {
    const camera = card.dataset.camera;
    const ask = card.querySelector("form.ask");
    if (ask) ask.addEventListener("submit", async (e) => {
      e.preventDefault();
      const out = card.querySelector(".answer");
      const button = ask.querySelector("button");
      out.textContent = "";
      out.dataset.state = "streaming";
      out.dataset.pieces = "0";
      button.disabled = true;
      try {
        await postForEvents(`/api/cameras/${encodeURIComponent(camera)}/ask`,
          { question: ask.question.value }, (name, data) => {
            if (name === "text") {
              out.textContent += data;
              out.dataset.pieces = String(Number(out.dataset.pieces) + 1);
            } else if (name === "answer") {
              out.textContent = data.answer;
              out.dataset.state = "done";
            } else if (name === "error") {
              out.textContent = data.error;
              out.dataset.state = "error";
            }
          });
      } catch (err) {
        out.textContent = String(err);
        out.dataset.state = "error";
      } finally {
        button.disabled = false;
      }
    });
    const editor = card.querySelector(".label-editor form");
    editor.addEventListener("submit", async (e) => {
      e.preventDefault();
      const status = editor.querySelector(".status");
      const labels = editor.labels.value.split("\n").map((l) => l.trim()).filter((l) => l);
      const r = await fetch(`/api/cameras/${encodeURIComponent(camera)}/labels`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ labels }),
      });
      if (r.ok) {
        status.textContent = "saved: the next frame uses them";
        status.dataset.state = "saved";
      } else {
        status.textContent = await failure(r);
        status.dataset.state = "error";
      }
    });
  }
}

// ---- frames: the timeline and search results -------------------------------

function frameFigure(f) {
  const top = f.labels[0];
  return el("figure", { class: "frame", "data-frame-id": f.id },
    el("a", { href: f.thumbnail },
      el("img", { src: f.thumbnail, alt: f.caption || `frame ${f.id}`, loading: "lazy" })),
    el("figcaption", {},
      el("span", { class: "when", text: when(f.time_ms) }), " ",
      el("span", { class: "cam", text: f.camera }), " ",
      top ? el("span", { class: "top", text: `${top.label} ${top.score.toFixed(2)}` }) : null, " ",
      f.score != null ? el("span", { class: "similarity", text: `match ${f.score.toFixed(3)}` }) : null,
      el("span", { class: "caption", text: f.caption || "" }),
      el("a", { class: "like", href: `/search?like=${f.id}`, text: "more like this" })));
}

async function showFrames(path, into, status) {
  status.textContent = "loading…";
  const r = await api(path);
  if (!r.ok) {
    status.textContent = await failure(r);
    status.dataset.state = "error";
    return null;
  }
  const j = await r.json();
  into.append(...j.frames.map(frameFigure));
  status.dataset.state = "done";
  return j;
}

function timeline() {
  const form = document.getElementById("filters");
  if (!form) return;
  const frames = document.getElementById("frames");
  const status = document.getElementById("status");
  const older = document.getElementById("older");
  const limit = 48;
  let query = null;
  let oldest = null;
  const load = async () => {
    const q = new URLSearchParams(query);
    q.set("limit", limit);
    if (oldest != null) q.set("before", oldest);
    const j = await showFrames(`/api/frames?${q}`, frames, status);
    if (!j) return;
    if (j.frames.length) oldest = j.frames[j.frames.length - 1].id;
    older.hidden = j.frames.length < limit;
    status.textContent = frames.children.length ? `${frames.children.length} frame(s)` : "no frames match";
  };
  const filters = () => {
    const q = new URLSearchParams();
    const f = new FormData(form);
    for (const k of ["camera", "label", "min_score"]) if (f.get(k)) q.set(k, f.get(k));
    if (!f.get("label")) q.delete("min_score");
    if (f.get("since")) q.set("since_ms", new Date(f.get("since")).getTime());
    if (f.get("until")) q.set("until_ms", new Date(f.get("until")).getTime());
    return q.toString();
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    query = filters();
    oldest = null;
    frames.replaceChildren();
    history.replaceState(null, "", `/timeline?${query}`);
    load();
  });
  older.addEventListener("click", load);
  // Filters given in the address (a link, or back to this page) are applied.
  const given = new URLSearchParams(location.search);
  for (const [k, v] of given) if (form.elements[k]) form.elements[k].value = v;
  query = filters();
  load();
}

// A hit of the fleet: the frame lives on the device that answered, so its
// thumbnail comes inline and there is no "more like this" here.
function fleetFigure(h) {
  const top = h.labels[0];
  return el("figure", { class: "frame", "data-device": h.device, "data-frame-id": h.frame_id },
    h.thumbnail ? el("img", { src: h.thumbnail, alt: h.caption || `${h.device} frame ${h.frame_id}` }) : null,
    el("figcaption", {},
      el("span", { class: "device", text: h.device }), " ",
      el("span", { class: "when", text: when(h.time_ms) }), " ",
      el("span", { class: "cam", text: h.camera }), " ",
      top ? el("span", { class: "top", text: `${top.label} ${top.score.toFixed(2)}` }) : null, " ",
      el("span", { class: "similarity", text: `match ${h.score.toFixed(3)}` }),
      el("span", { class: "caption", text: h.caption || "" })));
}

async function fleetSearch(text, frames, status) {
  const devices = document.getElementById("devices");
  document.getElementById("heading").textContent = `Every device: frames matching “${text}”`;
  status.textContent = "asking every device…";
  const r = await api(`/api/fleet/search?${new URLSearchParams({ q: text })}`);
  if (!r.ok) {
    status.textContent = await failure(r);
    status.dataset.state = "error";
    return;
  }
  const j = await r.json();
  frames.append(...j.hits.map(fleetFigure));
  devices.append(
    ...j.answered.map((a) => el("li", { class: "answered", "data-device": a.device,
      text: `${a.device}: ${a.searched} frame(s), answered after ${a.after_ms.toFixed(0)} ms${a.error ? ` (${a.error})` : ""}` })),
    ...j.missed.map((d) => el("li", { class: "missed", "data-device": d, text: `${d}: no answer in time` })),
    ...j.offline.map((d) => el("li", { class: "offline", "data-device": d, text: `${d}: offline` })));
  status.textContent = `${j.hits.length} hit(s) from ${j.answered.length} device(s), best first`;
  status.dataset.state = "done";
}

function search() {
  const frames = document.getElementById("frames");
  if (!frames) return;
  const status = document.getElementById("status");
  const heading = document.getElementById("heading");
  const given = new URLSearchParams(location.search);
  const fleetLink = document.getElementById("fleet-link");
  if (fleetLink && given.get("q")) {
    fleetLink.href = `/search?${new URLSearchParams({ q: given.get("q"), fleet: "1" })}`;
    fleetLink.hidden = false;
  }
  if (given.get("fleet") && given.get("q")) {
    if (fleetLink) fleetLink.hidden = true;
    fleetSearch(given.get("q"), frames, status);
    return;
  }
  const q = new URLSearchParams();
  if (given.get("like")) {
    q.set("like", given.get("like"));
    heading.textContent = `Frames like frame ${given.get("like")}`;
  } else if (given.get("q")) {
    q.set("q", given.get("q"));
    heading.textContent = `Frames matching “${given.get("q")}”`;
  } else {
    status.textContent = "Type what you are looking for, or pick “more like this” on a frame.";
    return;
  }
  for (const k of ["camera", "label", "since_ms", "until_ms", "k"]) if (given.get(k)) q.set(k, given.get(k));
  showFrames(`/api/search?${q}`, frames, status).then((j) => {
    if (j) status.textContent = `${j.frames.length} of ${j.searched} frame(s), best first (${j.latency_ms.toFixed(1)} ms)`;
  });
}

// ---- start ----------------------------------------------------------------

for (const t of document.querySelectorAll("time.when")) {
  if (Number(t.dataset.ms)) t.textContent = when(Number(t.dataset.ms));
}
switch (document.body.dataset.page) {
  case "cameras": wireCameraForms(); followCameras(); break;
  case "timeline": timeline(); break;
  case "search": search(); break;
}
