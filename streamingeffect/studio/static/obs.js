// The OBS view: a studio session's processed video and nothing else, for OBS's Browser Source.
// /obs/SESSION?background=none|chroma|transparent&key=00ff00. Frames come over a WebSocket (the
// newest only); a closed or missing session is retried every 2 s, so OBS can keep the source open.
(() => {
  "use strict";

  const params = new URLSearchParams(location.search);
  const sessionId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const background = params.get("background") || "none";
  const key = (params.get("key") || "00ff00").replace(/^#/, "");
  const canvas = document.getElementById("view");
  const note = document.getElementById("note");
  const context = canvas.getContext("2d");
  const view = {
    framesShown: 0,
    connected: false,
    error: null,
    background,
    grab: () => canvas.toDataURL("image/png"), // for tests and screenshots
  };
  window.obsView = view;

  // Letterbox bars take the page's background: the key colour when keying, black for plain video.
  if (background === "chroma") document.body.style.background = `#${key}`;
  else if (background === "none") document.body.style.background = "#000";

  function say(text) {
    note.textContent = text;
    note.hidden = !text;
  }

  async function show(blob) {
    const bitmap = await createImageBitmap(blob);
    if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
    }
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.drawImage(bitmap, 0, 0);
    bitmap.close();
    view.framesShown += 1;
    if (view.framesShown === 1) say("");
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams({ background, key });
    const url = `${scheme}://${location.host}/api/sessions/${encodeURIComponent(sessionId)}/view?${query}`;
    const socket = new WebSocket(url);
    socket.binaryType = "blob";
    let drawing = false;
    socket.onopen = () => {
      view.connected = true;
      view.error = null;
    };
    socket.onmessage = (event) => {
      if (drawing) return; // still decoding the previous frame: this one is already old
      drawing = true;
      show(event.data)
        .catch((error) => { view.error = String(error); })
        .finally(() => { drawing = false; });
    };
    socket.onclose = (event) => {
      view.connected = false;
      if (event.code === 4400) { // a bad address: retrying will not help
        view.error = event.reason;
        say(event.reason);
        return;
      }
      if (event.code === 4404) {
        view.error = event.reason || "no such session";
        say(`${view.error} (retrying)`);
      } else if (view.framesShown === 0) {
        say("Waiting for the studio…");
      }
      setTimeout(connect, 2000);
    };
  }

  say("Waiting for the studio session…");
  connect();
})();
