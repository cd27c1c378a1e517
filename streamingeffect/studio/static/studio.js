/* StreamingEffect studio: camera in, effect out. Plain JS, no build step.
 * API: see the server's studio API description (same origin). */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const el = {
    status: $("status"),
    error: $("error"),
    inputVideo: $("input-video"),
    inputMeta: $("input-meta"),
    inputPlaceholder: $("input-placeholder"),
    outputVideo: $("output-video"),
    outputImage: $("output-image"),
    outputPlaceholder: $("output-placeholder"),
    currentEffect: $("current-effect"),
    search: $("effect-search"),
    results: $("effect-results"),
    prompt: $("prompt"),
    promptApply: $("prompt-apply"),
    capture: $("capture"),
    clearKeyframe: $("clear-keyframe"),
    record: $("record"),
    recordingLink: $("recording-link"),
    editor: $("editor"),
    canvas: $("editor-canvas"),
    brushTool: $("tool-brush"),
    brushColor: $("brush-color"),
    brushSize: $("brush-size"),
    fillPerson: $("fill-person"),
    fillOpacity: $("fill-opacity"),
    stickers: $("stickers"),
    undo: $("editor-undo"),
    reset: $("editor-reset"),
    upload: $("upload"),
    applyKeyframe: $("apply-keyframe"),
    cancel: $("editor-cancel"),
  };

  // Test hooks: an automated browser test reads these fields directly, so they are
  // the single source of truth for session/transport state (not copies).
  const studio = {
    sessionId: null,
    transport: null, // "webrtc" | "websocket" | null
    framesShown: 0,
    lastError: null,
    ready: false,
    grabOutput,
    grabInput,
  };
  window.studio = studio;

  const params = new URLSearchParams(location.search);
  const wantedTransport = normalizeTransport(params.get("transport"));

  let camStream = null;
  let pc = null;
  let ws = null;
  let ended = false; // session gone (idle timeout / closed): stop everything
  let current = { id: null, label: null };
  let lastStats = null;
  let statsTimer = 0;
  let recording = false;
  let recBusy = false;
  let effectVersion = 0; // lets a stats reply that predates an effect change be ignored

  function normalizeTransport(v) {
    v = (v || "auto").toLowerCase();
    if (v === "websocket") return "ws";
    return v === "webrtc" || v === "ws" ? v : "auto";
  }

  /* ---------------------------------------------------------------- errors */

  let errorTimer = 0;
  function showError(msg, { sticky = false } = {}) {
    const text = String(msg || "Something went wrong");
    studio.lastError = text;
    el.error.textContent = text;
    el.error.hidden = false;
    clearTimeout(errorTimer);
    // Once the session is gone the message must stay: nothing else will work.
    if (!sticky && !ended) errorTimer = setTimeout(() => { el.error.hidden = true; }, 8000);
    console.warn("[studio]", text);
  }
  el.error.addEventListener("click", () => { if (!ended) el.error.hidden = true; });

  /* ------------------------------------------------------------------- API */

  class ApiError extends Error {
    constructor(message, status) { super(message); this.status = status; }
  }

  async function api(path, opts = {}) {
    const init = { method: opts.method || "GET", signal: opts.signal };
    if (opts.json !== undefined) {
      init.headers = { "Content-Type": "application/json" };
      init.body = JSON.stringify(opts.json);
    } else if (opts.body !== undefined) {
      init.body = opts.body; // FormData: the browser sets the multipart boundary itself
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError("Cannot reach the studio server", 0);
    }
    const text = await res.text();
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch { data = null; } }
    if (!res.ok) {
      // The API promises {"error"}; framework-level errors (e.g. validation) use {"detail"}.
      let msg = data && data.error;
      if (!msg && data && data.detail) {
        msg = typeof data.detail === "string" ? data.detail
          : (data.detail[0] && data.detail[0].msg) || JSON.stringify(data.detail);
      }
      throw new ApiError(msg || `${res.status} ${res.statusText}`.trim(), res.status);
    }
    return data;
  }

  // Any 404 on a session route means the session is gone (idle timeout or closed).
  async function sessionApi(sub, opts) {
    if (!studio.sessionId) throw new ApiError("The session is not ready yet", 0);
    if (ended) throw new ApiError("session ended — reload", 404);
    try {
      return await api(`/api/sessions/${encodeURIComponent(studio.sessionId)}${sub}`, opts);
    } catch (e) {
      if (e.status === 404) endSession();
      throw e;
    }
  }

  function endSession() {
    if (ended) return;
    ended = true;
    clearTimeout(statsTimer);
    stopSendLoop();
    stopVideoFrameCounter();
    if (ws) { const s = ws; ws = null; try { s.close(); } catch { /* already closed */ } }
    if (pc) { const p = pc; pc = null; try { p.close(); } catch { /* already closed */ } }
    for (const b of [el.capture, el.clearKeyframe, el.record, el.promptApply]) b.disabled = true;
    el.outputPlaceholder.textContent = "Session ended — reload the page";
    el.outputPlaceholder.hidden = false;
    showError("session ended — reload", { sticky: true });
    renderStatus();
  }

  /* ----------------------------------------------------------------- start */

  async function main() {
    bindUi();
    renderStatus();
    loadEffects(""); // the list does not need a session, so show it right away
    const infoP = api("/api/info").catch(() => null);

    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      fail("Camera API unavailable: open the studio via http://localhost or https.", "no camera");
      return;
    }
    try {
      camStream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 } },
        audio: false,
      });
    } catch (e) {
      fail(cameraMessage(e), "no camera");
      return;
    }
    el.inputVideo.srcObject = camStream;
    el.inputVideo.play().catch(() => {});

    const info = await infoP;
    const wanted = params.get("effect") || (info && info.default_effect) || null;

    let created = null;
    let effectId = wanted;
    let failure = null;
    try {
      created = await api("/api/sessions", { method: "POST", json: wanted ? { effect: wanted } : {} });
    } catch (e) {
      failure = e;
    }
    if (!created && failure && failure.status === 400 && wanted) {
      // A bad ?effect= should not make the studio unusable: start with the server default.
      showError(failure.message);
      effectId = null;
      try { created = await api("/api/sessions", { method: "POST", json: {} }); } catch (e) { failure = e; }
    }
    if (!created) {
      // 503 = studio full: the server's own words explain it best.
      const why = failure ? failure.message : "empty reply from the server";
      fail(failure && failure.status === 503 ? why : `Could not start a session: ${why}`, "no session");
      return;
    }
    studio.sessionId = created.session;
    const obsLink = $("obs-link"); // the output alone, for OBS's Browser Source
    obsLink.href = `/obs/${encodeURIComponent(studio.sessionId)}`;
    obsLink.hidden = false;
    current = { id: effectId, label: created.effect };
    renderCurrentEffect();
    for (const b of [el.capture, el.clearKeyframe, el.record, el.promptApply]) b.disabled = false;
    el.outputPlaceholder.textContent = "Connecting…";

    pollStats();
    await setupTransport();
  }

  function fail(message, phase) {
    showError(message, { sticky: true });
    if (phase === "no camera") {
      el.inputPlaceholder.textContent = message;
      el.outputPlaceholder.textContent = "No camera, no effect";
    } else {
      el.outputPlaceholder.textContent = message;
    }
    renderStatus(phase);
  }

  function cameraMessage(e) {
    switch (e && e.name) {
      case "NotAllowedError":
      case "SecurityError":
        return "Camera access was denied. Allow the camera for this page and reload.";
      case "NotFoundError":
      case "OverconstrainedError":
        return "No camera found. Connect a webcam and reload.";
      case "NotReadableError":
        return "The camera is busy (another app is using it). Close it and reload.";
      default:
        return `Could not open the camera: ${(e && e.message) || e}`;
    }
  }

  /* ------------------------------------------------------------- transport */

  async function setupTransport() {
    if (wantedTransport !== "ws") {
      const ok = await tryWebRTC(wantedTransport === "webrtc");
      if (ok || ended || wantedTransport === "webrtc") return;
    }
    startWebSocket();
  }

  function activate(kind) {
    studio.transport = kind;
    document.body.dataset.transport = kind;
    el.outputVideo.hidden = kind !== "webrtc";
    el.outputImage.hidden = kind !== "websocket";
    if (studio.framesShown === 0) el.outputPlaceholder.textContent = "Waiting for the first processed frame…";
    studio.ready = true;
    renderStatus();
  }

  function frameShown() {
    if (!el.outputPlaceholder.hidden) el.outputPlaceholder.hidden = true;
  }

  /* WebRTC. The server is aiortc and does not trickle ICE, so the offer is sent
   * only after gathering is complete (or 3 s, whatever we have by then). */
  async function tryWebRTC(forced) {
    if (typeof RTCPeerConnection === "undefined") {
      if (forced) showError("This browser has no WebRTC support; try ?transport=ws");
      return false;
    }
    const conn = new RTCPeerConnection({ iceServers: [] });
    pc = conn;
    try {
      for (const track of camStream.getVideoTracks()) conn.addTrack(track, camStream);
      conn.ontrack = (ev) => {
        el.outputVideo.srcObject = ev.streams[0] || new MediaStream([ev.track]);
        el.outputVideo.play().catch(() => {});
      };
      await conn.setLocalDescription(await conn.createOffer());
      await waitIceGathering(conn, 3000);
      const local = conn.localDescription;
      const answer = await sessionApi("/offer", { method: "POST", json: { sdp: local.sdp, type: local.type } });
      await conn.setRemoteDescription(answer);
      await waitConnected(conn, 8000);
    } catch (e) {
      try { conn.close(); } catch { /* ignore */ }
      if (pc === conn) pc = null;
      if (ended) return false;
      if (forced) showError(`WebRTC failed: ${e.message}`);
      else console.info("[studio] WebRTC unavailable, falling back to WebSocket:", e.message);
      return false;
    }
    if (ended || pc !== conn) return false;

    activate("webrtc");
    startVideoFrameCounter();
    conn.addEventListener("connectionstatechange", () => {
      if (pc !== conn || ended) return;
      if (conn.connectionState === "failed" || conn.connectionState === "closed") {
        pc = null;
        stopVideoFrameCounter();
        try { conn.close(); } catch { /* ignore */ }
        if (wantedTransport === "auto") {
          showError("WebRTC connection lost — switching to WebSocket");
          startWebSocket();
        } else {
          showError("WebRTC connection lost — reload to reconnect");
          studio.transport = null;
          renderStatus();
        }
      }
    });
    return true;
  }

  function waitIceGathering(conn, ms) {
    if (conn.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function onState() { if (conn.iceGatheringState === "complete") done(); }
      function onCandidate(e) { if (!e.candidate) done(); }
      function done() {
        clearTimeout(timer);
        conn.removeEventListener("icegatheringstatechange", onState);
        conn.removeEventListener("icecandidate", onCandidate);
        resolve();
      }
      conn.addEventListener("icegatheringstatechange", onState);
      conn.addEventListener("icecandidate", onCandidate);
    });
  }

  function waitConnected(conn, ms) {
    // connectionState is missing in some older browsers; ICE state is close enough there.
    const state = () => conn.connectionState
      || ({ completed: "connected" })[conn.iceConnectionState] || conn.iceConnectionState;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`not connected after ${ms / 1000} s`)), ms);
      function check() {
        const s = state();
        if (s === "connected") finish();
        else if (s === "failed" || s === "closed") finish(new Error(`connection ${s}`));
      }
      function finish(err) {
        clearTimeout(timer);
        conn.removeEventListener("connectionstatechange", check);
        conn.removeEventListener("iceconnectionstatechange", check);
        if (err) reject(err); else resolve();
      }
      conn.addEventListener("connectionstatechange", check);
      conn.addEventListener("iceconnectionstatechange", check);
      check();
    });
  }

  // Count frames actually presented, not frames received: that is what the person sees.
  let rvfcHandle = 0;
  let pollHandle = 0;
  function startVideoFrameCounter() {
    stopVideoFrameCounter();
    const v = el.outputVideo;
    if (typeof v.requestVideoFrameCallback === "function") {
      let last = null;
      const onFrame = (_now, meta) => {
        const pf = meta && typeof meta.presentedFrames === "number" ? meta.presentedFrames : null;
        // presentedFrames catches frames presented between callbacks; it resets with a new stream.
        studio.framesShown += pf !== null && last !== null && pf > last ? pf - last : 1;
        last = pf;
        frameShown();
        rvfcHandle = v.requestVideoFrameCallback(onFrame);
      };
      rvfcHandle = v.requestVideoFrameCallback(onFrame);
    } else {
      let lastTime = -1;
      pollHandle = setInterval(() => {
        if (v.readyState >= 2 && v.currentTime !== lastTime) {
          lastTime = v.currentTime;
          studio.framesShown += 1;
          frameShown();
        }
      }, 50);
    }
  }

  function stopVideoFrameCounter() {
    if (rvfcHandle && el.outputVideo.cancelVideoFrameCallback) el.outputVideo.cancelVideoFrameCallback(rvfcHandle);
    rvfcHandle = 0;
    clearInterval(pollHandle);
    pollHandle = 0;
  }

  /* WebSocket fallback: JPEG frames up, processed JPEG frames down. */
  const SEND_INTERVAL_MS = 1000 / 15;
  const MAX_IN_FLIGHT = 2;
  const sendCanvas = document.createElement("canvas");
  const sendCtx = sendCanvas.getContext("2d");
  let sendTimer = 0;
  let encoding = false;
  let inFlight = 0;
  let lastSentAt = 0;
  let lastReplyAt = 0;
  let wsRetries = 0;
  let frameSeq = 0;
  let shownSeq = 0;
  let lastFrame = null; // {img, url}: fully decoded, so grabOutput never sees a half-loaded frame

  function startWebSocket() {
    if (ended) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const sock = new WebSocket(`${proto}//${location.host}/api/sessions/${encodeURIComponent(studio.sessionId)}/ws`);
    sock.binaryType = "arraybuffer";
    ws = sock;
    inFlight = 0;

    sock.onopen = () => {
      if (ws !== sock) return;
      wsRetries = 0;
      activate("websocket");
      startSendLoop();
    };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      if (typeof ev.data === "string") {
        let msg = null;
        try { msg = JSON.parse(ev.data); } catch { return; }
        if (msg && msg.type === "error") showError(msg.error || "Processing error");
        return;
      }
      inFlight = Math.max(0, inFlight - 1);
      lastReplyAt = performance.now();
      studio.framesShown += 1;
      showJpeg(ev.data);
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      stopSendLoop();
      if (ended) return;
      // A 404-ish close usually means the session is gone; the stats poll will confirm.
      if (wsRetries < 5) {
        wsRetries += 1;
        if (wsRetries === 1) showError(`Stream connection closed${ev.reason ? `: ${ev.reason}` : ""} — reconnecting…`);
        setTimeout(() => { if (!ended && !ws) startWebSocket(); }, 500 * wsRetries);
      } else {
        showError("Stream connection lost — reload to reconnect", { sticky: true });
        studio.transport = null;
        renderStatus();
      }
    };
  }

  function startSendLoop() {
    stopSendLoop();
    sendTimer = setInterval(sendFrame, SEND_INTERVAL_MS);
  }

  function stopSendLoop() {
    clearInterval(sendTimer);
    sendTimer = 0;
  }

  function sendFrame() {
    const sock = ws;
    if (!sock || sock.readyState !== WebSocket.OPEN || ended || encoding) return;
    // Back-pressure: never queue frames; a stale frame is worse than a skipped one.
    if (sock.bufferedAmount !== 0) return;
    const now = performance.now();
    if (inFlight >= MAX_IN_FLIGHT) {
      // The server may drop a frame without answering; don't stall forever on it.
      if (now - Math.max(lastSentAt, lastReplyAt) < 2000) return;
      inFlight = 0;
    }
    const v = el.inputVideo;
    const w = v.videoWidth;
    const h = v.videoHeight;
    if (!w || !h) return;
    if (sendCanvas.width !== w || sendCanvas.height !== h) {
      sendCanvas.width = w;
      sendCanvas.height = h;
    }
    sendCtx.drawImage(v, 0, 0, w, h);
    encoding = true;
    sendCanvas.toBlob((blob) => {
      encoding = false;
      if (!blob || ws !== sock || sock.readyState !== WebSocket.OPEN) return;
      sock.send(blob);
      inFlight += 1;
      lastSentAt = performance.now();
    }, "image/jpeg", 0.8);
  }

  function showJpeg(buf) {
    const seq = ++frameSeq;
    const url = URL.createObjectURL(new Blob([buf], { type: "image/jpeg" }));
    const img = new Image();
    img.onload = () => {
      if (seq < shownSeq || ended) { URL.revokeObjectURL(url); return; } // decoded out of order
      shownSeq = seq;
      const prev = lastFrame;
      lastFrame = { img, url };
      el.outputImage.src = url;
      // The previous frame is already decoded on screen; its URL is no longer needed.
      if (prev) URL.revokeObjectURL(prev.url);
      frameShown();
    };
    img.onerror = () => URL.revokeObjectURL(url);
    img.src = url;
  }

  /* ------------------------------------------------------------ test hooks */

  function snapshot(source, w, h) {
    if (!w || !h) return null;
    const c = document.createElement("canvas");
    c.width = w;
    c.height = h;
    try {
      c.getContext("2d").drawImage(source, 0, 0, w, h);
      return c.toDataURL("image/png");
    } catch {
      return null;
    }
  }

  function grabOutput() {
    if (studio.transport === "webrtc") {
      const v = el.outputVideo;
      return v.readyState >= 2 ? snapshot(v, v.videoWidth, v.videoHeight) : null;
    }
    if (studio.transport === "websocket" && lastFrame) {
      return snapshot(lastFrame.img, lastFrame.img.naturalWidth, lastFrame.img.naturalHeight);
    }
    return null;
  }

  function grabInput() {
    const v = el.inputVideo;
    return v.readyState >= 2 ? snapshot(v, v.videoWidth, v.videoHeight) : null;
  }

  /* ---------------------------------------------------------------- stats */

  async function pollStats() {
    if (ended || !studio.sessionId) return;
    const version = effectVersion;
    try {
      const s = await sessionApi("/stats");
      lastStats = s;
      if (version !== effectVersion) s.effect = current.label;
      if (s.effect && s.effect !== current.label) {
        current = { id: null, label: s.effect };
        renderCurrentEffect();
      }
      if (!recBusy && typeof s.recording === "boolean" && s.recording !== recording) {
        recording = s.recording;
        renderRecordButton();
      }
    } catch (e) {
      if (ended) return;
      lastStats = Object.assign({}, lastStats, { error: e.message });
    }
    renderStatus();
    if (!ended) statsTimer = setTimeout(pollStats, 1000);
  }

  const fmtMs = (v) => (typeof v === "number" ? Math.round(v) : "–");
  function fmtClock(sec) {
    sec = Math.max(0, Math.floor(sec || 0));
    return `${String(Math.floor(sec / 60)).padStart(2, "0")}:${String(sec % 60).padStart(2, "0")}`;
  }

  function chip(text, cls, label) {
    const c = document.createElement("span");
    c.className = `chip ${cls || ""}`.trim();
    if (label) {
      const b = document.createElement("b");
      b.textContent = label;
      c.append(b, " ");
    }
    c.append(text);
    return c;
  }

  function renderStatus(phase) {
    const s = lastStats || {};
    const chips = [];
    if (ended) {
      chips.push(chip("session ended", "bad"));
    } else if (!studio.sessionId) {
      chips.push(chip(phase || "starting…", phase ? "bad" : "muted"));
    } else {
      const t = studio.transport || s.transport;
      chips.push(chip(t === "webrtc" ? "WebRTC" : t === "websocket" ? "WebSocket" : "connecting…",
        t ? "good" : "muted", "via"));
    }
    if (studio.sessionId) {
      chips.push(chip(typeof s.fps === "number" ? s.fps.toFixed(1) : "–", "", "fps"));
      chips.push(chip(`${fmtMs(s.latency_p50_ms)} / ${fmtMs(s.latency_p95_ms)} ms`, "", "p50/p95"));
      chips.push(chip(String(s.dropped != null ? s.dropped : "–"), "", "dropped"));
      chips.push(chip(String(studio.framesShown), "", "shown"));
      const label = s.effect || current.label;
      if (label) { const c = chip(label, "fx", "fx"); c.title = label; chips.push(c); }
      if (s.keyframe) chips.push(chip("keyframe", "badge"));
      if (s.recording || recording) chips.push(chip(`REC ${fmtClock(s.recording_seconds)}`, "rec"));
      if (s.error) { const c = chip(s.error, "bad", "error"); c.title = s.error; chips.push(c); }
    }
    el.status.replaceChildren(...chips);
  }

  /* --------------------------------------------------------------- effects */

  let searchTimer = 0;
  let searchSeq = 0;
  let searchAbort = null;

  async function loadEffects(q) {
    const seq = ++searchSeq;
    if (searchAbort) searchAbort.abort();
    searchAbort = typeof AbortController === "function" ? new AbortController() : null;
    let data;
    try {
      data = await api(`/api/effects?q=${encodeURIComponent(q)}&limit=12`,
        { signal: searchAbort ? searchAbort.signal : undefined });
    } catch (e) {
      if (e.name === "AbortError" || seq !== searchSeq) return;
      showError(`Effect search failed: ${e.message}`);
      return;
    }
    if (seq !== searchSeq) return; // a newer query already answered
    renderEffects((data && data.effects) || [], q);
  }

  function renderEffects(effects, q) {
    const items = effects.map((fx) => {
      const li = document.createElement("li");
      li.dataset.id = fx.id;
      li.dataset.label = fx.label || fx.id;
      li.tabIndex = 0;
      li.setAttribute("role", "option");
      const top = document.createElement("div");
      top.className = "fx-top";
      const name = document.createElement("span");
      name.className = "fx-label";
      name.textContent = fx.label || fx.id;
      top.append(name);
      const tag = fx.region || fx.kind;
      if (tag) {
        const t = document.createElement("span");
        t.className = "fx-tag";
        t.textContent = tag;
        top.append(t);
      }
      li.append(top);
      if (fx.description) {
        const d = document.createElement("span");
        d.className = "fx-desc";
        d.textContent = fx.description;
        li.append(d);
      }
      return li;
    });
    if (!items.length) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = q ? "No matching effects — try describing it below." : "No effects available.";
      items.push(li);
    }
    el.results.replaceChildren(...items);
    markSelected();
  }

  function markSelected() {
    for (const li of el.results.querySelectorAll("li[data-id]")) {
      const on = li.dataset.id === current.id || (!!current.label && li.dataset.label === current.label);
      li.classList.toggle("selected", !!on);
      li.setAttribute("aria-selected", on ? "true" : "false");
    }
  }

  function renderCurrentEffect() {
    el.currentEffect.textContent = current.label || "—";
    el.currentEffect.title = current.label || "";
    markSelected();
  }

  async function setEffect(effect, id, li) {
    if (li) li.classList.add("pending");
    try {
      const r = await sessionApi("/effect", { method: "POST", json: { effect } });
      current = { id, label: (r && r.effect) || effect };
      effectVersion += 1;
      renderCurrentEffect();
      if (lastStats) lastStats.effect = current.label;
      renderStatus();
      return true;
    } catch (e) {
      showError(e.message);
      return false;
    } finally {
      if (li) li.classList.remove("pending");
    }
  }

  async function applyPrompt() {
    // Sent as typed (trimmed): the server owns validation, e.g. empty -> 400.
    el.promptApply.disabled = true;
    try { await setEffect(el.prompt.value.trim(), null, null); } finally { el.promptApply.disabled = ended; }
  }

  /* -------------------------------------------------------- keyframe editor */

  const ctx = el.canvas.getContext("2d", { willReadFrequently: true }); // undo needs getImageData
  const UNDO_LIMIT = 30;
  let undoStack = [];
  let baseImage = null;
  let maskImage = null;
  let sticker = null;
  let stroke = null;
  let focusBeforeEditor = null;

  function loadImage(src) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("could not decode the captured image"));
      img.src = src;
    });
  }

  async function captureKeyframe() {
    el.capture.disabled = true;
    const label = el.capture.textContent;
    el.capture.textContent = "Capturing…";
    try {
      const cap = await sessionApi("/capture", { method: "POST" });
      const [img, mask] = await Promise.all([
        loadImage(cap.image),
        cap.mask ? loadImage(cap.mask).catch(() => null) : Promise.resolve(null),
      ]);
      baseImage = img;
      maskImage = mask;
      el.canvas.width = cap.width || img.naturalWidth;
      el.canvas.height = cap.height || img.naturalHeight;
      ctx.drawImage(img, 0, 0, el.canvas.width, el.canvas.height);
      undoStack = [];
      updateUndo();
      el.fillPerson.disabled = !maskImage;
      setSticker(null);
      openEditor();
    } catch (e) {
      showError(e.message);
    } finally {
      el.capture.textContent = label;
      el.capture.disabled = ended;
    }
  }

  function openEditor() {
    focusBeforeEditor = document.activeElement;
    el.editor.hidden = false;
    document.body.classList.add("editing");
    el.brushTool.focus();
  }

  function closeEditor() {
    el.editor.hidden = true;
    document.body.classList.remove("editing");
    stroke = null;
    undoStack = []; // free the ImageData memory
    updateUndo();
    if (focusBeforeEditor && focusBeforeEditor.focus) focusBeforeEditor.focus();
  }

  function pushUndo() {
    undoStack.push(ctx.getImageData(0, 0, el.canvas.width, el.canvas.height));
    if (undoStack.length > UNDO_LIMIT) undoStack.shift();
    updateUndo();
  }

  function undo() {
    const prev = undoStack.pop();
    if (prev) ctx.putImageData(prev, 0, 0);
    updateUndo();
  }

  function updateUndo() { el.undo.disabled = undoStack.length === 0; }

  function resetCanvas() {
    if (!baseImage) return;
    pushUndo(); // reset is undoable: it is the easiest way to lose work
    ctx.clearRect(0, 0, el.canvas.width, el.canvas.height);
    ctx.drawImage(baseImage, 0, 0, el.canvas.width, el.canvas.height);
  }

  function setSticker(s) {
    sticker = s;
    for (const b of el.stickers.querySelectorAll("[data-sticker]")) {
      b.setAttribute("aria-pressed", b.dataset.sticker === s ? "true" : "false");
    }
    el.brushTool.setAttribute("aria-pressed", s ? "false" : "true");
    el.canvas.classList.toggle("stamp", !!s);
  }

  // The canvas is CSS-scaled to fit; map pointer positions back to native pixels.
  function toCanvas(ev) {
    const r = el.canvas.getBoundingClientRect();
    return {
      x: ((ev.clientX - r.left) * el.canvas.width) / r.width,
      y: ((ev.clientY - r.top) * el.canvas.height) / r.height,
    };
  }

  function brushSize() { return Number(el.brushSize.value) || 14; }

  function dot(p) {
    ctx.fillStyle = el.brushColor.value;
    ctx.beginPath();
    ctx.arc(p.x, p.y, brushSize() / 2, 0, Math.PI * 2);
    ctx.fill();
  }

  function segment(a, b) {
    ctx.strokeStyle = el.brushColor.value;
    ctx.lineWidth = brushSize();
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
  }

  function stamp(p) {
    const size = brushSize() * 2;
    ctx.save();
    ctx.font = `${size}px "Apple Color Emoji", "Segoe UI Emoji", "Noto Color Emoji", sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(sticker, p.x, p.y);
    ctx.restore();
  }

  function onPointerDown(ev) {
    if (ev.button !== 0) return;
    ev.preventDefault();
    const p = toCanvas(ev);
    pushUndo();
    if (sticker) { stamp(p); return; }
    stroke = { id: ev.pointerId, last: p };
    try { el.canvas.setPointerCapture(ev.pointerId); } catch { /* synthetic events */ }
    dot(p);
  }

  function onPointerMove(ev) {
    if (!stroke || ev.pointerId !== stroke.id) return;
    // Coalesced events keep fast strokes smooth instead of polygonal.
    const evs = typeof ev.getCoalescedEvents === "function" ? ev.getCoalescedEvents() : [];
    for (const e of evs.length ? evs : [ev]) {
      const p = toCanvas(e);
      segment(stroke.last, p);
      stroke.last = p;
    }
  }

  function onPointerUp(ev) {
    if (stroke && ev.pointerId === stroke.id) stroke = null;
  }

  function hexToRgb(hex) {
    const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex) || [0, "ff", "2b", "d6"];
    return [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)];
  }

  function fillPerson() {
    if (!maskImage) { showError("No person mask for this frame"); return; }
    const w = el.canvas.width;
    const h = el.canvas.height;
    const off = document.createElement("canvas");
    off.width = w;
    off.height = h;
    const o = off.getContext("2d", { willReadFrequently: true });
    o.drawImage(maskImage, 0, 0, w, h);
    const data = o.getImageData(0, 0, w, h);
    const d = data.data;
    const [r, g, b] = hexToRgb(el.brushColor.value);
    const opacity = Math.min(1, Math.max(0, Number(el.fillOpacity.value)));
    // Mask brightness becomes alpha, so soft mask edges stay soft.
    for (let i = 0; i < d.length; i += 4) {
      const m = ((d[i] + d[i + 1] + d[i + 2]) / 3) * (d[i + 3] / 255);
      d[i] = r;
      d[i + 1] = g;
      d[i + 2] = b;
      d[i + 3] = Math.round(m * opacity);
    }
    o.putImageData(data, 0, 0);
    pushUndo();
    ctx.drawImage(off, 0, 0);
  }

  async function postKeyframe(blob, filename) {
    const fd = new FormData();
    fd.append("image", blob, filename);
    await sessionApi("/keyframe", { method: "POST", body: fd });
    if (lastStats) lastStats.keyframe = true;
    renderStatus();
  }

  async function applyKeyframe() {
    el.applyKeyframe.disabled = true;
    try {
      const blob = await new Promise((resolve) => el.canvas.toBlob(resolve, "image/png"));
      if (!blob) throw new Error("Could not encode the edited image");
      await postKeyframe(blob, "keyframe.png");
      closeEditor();
    } catch (e) {
      showError(e.message);
    } finally {
      el.applyKeyframe.disabled = false;
    }
  }

  async function uploadKeyframe() {
    const file = el.upload.files && el.upload.files[0];
    if (!file) return;
    // Sent as-is: the server decides what is acceptable and says why if not.
    try {
      await postKeyframe(file, file.name || "upload");
      closeEditor();
    } catch (e) {
      showError(e.message);
    } finally {
      el.upload.value = ""; // allow choosing the same file again
    }
  }

  async function clearKeyframe() {
    el.clearKeyframe.disabled = true;
    try {
      await sessionApi("/keyframe", { method: "DELETE" });
      if (lastStats) lastStats.keyframe = false;
      renderStatus();
    } catch (e) {
      showError(e.message);
    } finally {
      el.clearKeyframe.disabled = ended;
    }
  }

  /* ------------------------------------------------------------- recording */

  function renderRecordButton() {
    el.record.textContent = recording ? "■ Stop" : "● Record";
    el.record.classList.toggle("recording", recording);
    el.record.setAttribute("aria-pressed", recording ? "true" : "false");
  }

  async function toggleRecording() {
    recBusy = true;
    el.record.disabled = true;
    try {
      if (!recording) {
        await sessionApi("/recording", { method: "POST", json: { action: "start" } });
        recording = true;
        el.recordingLink.hidden = true;
      } else {
        const r = await sessionApi("/recording", { method: "POST", json: { action: "stop" } });
        recording = false;
        if (r && r.url) {
          const secs = typeof r.seconds === "number" ? r.seconds : 0;
          el.recordingLink.href = r.url;
          el.recordingLink.download = r.url.split("/").pop() || "recording.mp4";
          el.recordingLink.textContent = `⬇ Download (${fmtClock(secs)}${r.frames != null ? `, ${r.frames} frames` : ""})`;
          el.recordingLink.hidden = false;
        }
      }
    } catch (e) {
      showError(e.message);
    } finally {
      recBusy = false;
      el.record.disabled = ended;
      renderRecordButton();
      renderStatus();
    }
  }

  /* -------------------------------------------------------------- bindings */

  function bindUi() {
    el.search.addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => loadEffects(el.search.value.trim()), 250);
    });

    const choose = (li) => {
      if (!li || !li.dataset.id) return;
      if (!studio.sessionId) { showError("The session is not ready yet"); return; }
      setEffect(li.dataset.id, li.dataset.id, li);
    };
    el.results.addEventListener("click", (ev) => choose(ev.target.closest("li[data-id]")));
    el.results.addEventListener("keydown", (ev) => {
      const li = ev.target.closest("li[data-id]");
      if (!li) return;
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); choose(li); }
      else if (ev.key === "ArrowDown" && li.nextElementSibling) { ev.preventDefault(); li.nextElementSibling.focus(); }
      else if (ev.key === "ArrowUp") { ev.preventDefault(); (li.previousElementSibling || el.search).focus(); }
    });
    el.search.addEventListener("keydown", (ev) => {
      if (ev.key === "ArrowDown") {
        const first = el.results.querySelector("li[data-id]");
        if (first) { ev.preventDefault(); first.focus(); }
      }
    });

    el.promptApply.addEventListener("click", applyPrompt);
    el.prompt.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.isComposing) { ev.preventDefault(); if (!el.promptApply.disabled) applyPrompt(); }
    });

    el.capture.addEventListener("click", captureKeyframe);
    el.clearKeyframe.addEventListener("click", clearKeyframe);
    el.record.addEventListener("click", toggleRecording);

    el.canvas.addEventListener("pointerdown", onPointerDown);
    el.canvas.addEventListener("pointermove", onPointerMove);
    el.canvas.addEventListener("pointerup", onPointerUp);
    el.canvas.addEventListener("pointercancel", onPointerUp);
    el.brushTool.addEventListener("click", () => setSticker(null));
    el.stickers.addEventListener("click", (ev) => {
      const b = ev.target.closest("[data-sticker]");
      if (b) setSticker(sticker === b.dataset.sticker ? null : b.dataset.sticker);
    });
    el.fillPerson.addEventListener("click", fillPerson);
    el.undo.addEventListener("click", undo);
    el.reset.addEventListener("click", resetCanvas);
    el.upload.addEventListener("change", uploadKeyframe);
    el.applyKeyframe.addEventListener("click", applyKeyframe);
    el.cancel.addEventListener("click", closeEditor);
    document.addEventListener("keydown", (ev) => {
      if (el.editor.hidden) return;
      if (ev.key === "Escape") closeEditor();
      else if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "z") { ev.preventDefault(); undo(); }
    });

    el.inputVideo.addEventListener("loadedmetadata", () => {
      const v = el.inputVideo;
      el.inputMeta.textContent = v.videoWidth ? `${v.videoWidth}×${v.videoHeight}` : "";
      el.inputPlaceholder.hidden = true;
    });

    // Free the server slot right away instead of waiting for the idle timeout. Both events:
    // some ways of closing a tab fire only one of them; closing twice is harmless.
    const closeSession = () => {
      if (studio.sessionId && !ended && navigator.sendBeacon) {
        navigator.sendBeacon(`/api/sessions/${encodeURIComponent(studio.sessionId)}/close`);
      }
    };
    window.addEventListener("pagehide", closeSession);
    window.addEventListener("beforeunload", closeSession);
    // Restored from the back/forward cache: the session was closed on pagehide.
    window.addEventListener("pageshow", (ev) => { if (ev.persisted) location.reload(); });
  }

  renderRecordButton();
  main().catch((e) => showError(`Studio failed to start: ${e.message || e}`, { sticky: true }));
})();
