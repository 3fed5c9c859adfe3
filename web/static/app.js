// crossfind search page: query parts (text, image, sound, "more like this") with weights,
// posted as one form to /partials/results, whose HTML replaces the result grid.
// Without JavaScript the same form is a plain GET of /?q=... rendered on the server.
"use strict";

(() => {
  const form = document.getElementById("search-form");
  const results = document.getElementById("results");
  const textBox = document.getElementById("q");
  const showBox = document.getElementById("show");
  const sortBox = document.getElementById("sort");
  const partsBox = document.getElementById("parts");
  const imageInput = document.getElementById("image-file");
  const audioInput = document.getElementById("audio-file");
  const recordBtn = document.getElementById("record");
  const dropzone = document.getElementById("dropzone");
  if (!form || !results) return;

  // the non-text parts of the query; text comes from the box
  const state = { image: null, audio: null, item: null, textWeight: 1, page: 1 };
  const likeField = form.querySelector("input[name=like]");
  if (likeField) {
    state.item = { id: likeField.value, name: "item " + likeField.value, weight: 1 };
    likeField.remove();
  }

  // ---- parts bar: one chip per part, each with a weight slider ---------------------------
  function slider(value, onInput, label) {
    const wrap = document.createDocumentFragment();
    const range = Object.assign(document.createElement("input"), {
      type: "range", min: "-1", max: "2", step: "0.1", value: String(value),
    });
    range.setAttribute("aria-label", "weight of " + label);
    const out = document.createElement("output");
    out.textContent = Number(value).toFixed(1);
    range.addEventListener("input", () => { out.textContent = Number(range.value).toFixed(1); onInput(Number(range.value)); });
    range.addEventListener("change", () => hasQuery() && search(1));
    wrap.append(range, out);
    return wrap;
  }

  function chip(kind, label, weight, setWeight, onRemove, thumb) {
    const el = document.createElement("div");
    el.className = "part part-" + kind;
    el.dataset.kind = kind;
    if (thumb) {
      el.append(Object.assign(document.createElement("img"), { src: thumb, alt: "" }));
    } else {
      const k = document.createElement("span");
      k.className = "kind";
      k.style.background = `var(--${kind === "item" ? "accent" : kind})`;
      k.textContent = { text: "Aa", image: "IMG", audio: "♪", item: "≈" }[kind];
      el.append(k);
    }
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    name.title = label;
    el.append(name, slider(weight, setWeight, label));
    if (onRemove) {
      const x = Object.assign(document.createElement("button"), { type: "button", textContent: "×", title: "Remove" });
      x.setAttribute("aria-label", "remove " + label);
      x.addEventListener("click", () => { onRemove(); renderParts(); hasQuery() ? search(1) : null; });
      el.append(x);
    }
    return el;
  }

  function renderParts() {
    partsBox.replaceChildren();
    const others = [state.image, state.audio, state.item].filter(Boolean).length;
    if (textBox.value.trim() && others) {
      partsBox.append(chip("text", "“" + textBox.value.trim() + "”", state.textWeight, (w) => { state.textWeight = w; }));
    }
    if (state.image) partsBox.append(chip("image", state.image.name, state.image.weight,
      (w) => { state.image.weight = w; }, () => { state.image = null; }, state.image.url));
    if (state.audio) partsBox.append(chip("audio", state.audio.name, state.audio.weight,
      (w) => { state.audio.weight = w; }, () => { state.audio = null; }));
    if (state.item) partsBox.append(chip("item", "like " + state.item.name, state.item.weight,
      (w) => { state.item.weight = w; }, () => { state.item = null; }, state.item.thumb));
  }

  const hasQuery = () => Boolean(textBox.value.trim() || state.image || state.audio || state.item);

  function setImage(file) {
    if (state.image) URL.revokeObjectURL(state.image.url);
    state.image = { file, name: file.name || "pasted image", url: URL.createObjectURL(file), weight: 1 };
    renderParts();
    search(1);
  }

  function setAudio(file, name) {
    state.audio = { file, name: name || file.name || "sound", weight: 1 };
    renderParts();
    search(1);
  }

  // ---- searching -------------------------------------------------------------------------
  let inFlight = null;
  async function search(page) {
    if (!hasQuery()) return;
    state.page = page;
    const data = new FormData();
    const text = textBox.value.trim();
    if (text) { data.append("text", text); data.append("text_weight", state.textWeight); }
    if (state.image) { data.append("image", state.image.file, state.image.name); data.append("image_weight", state.image.weight); }
    if (state.audio) { data.append("audio", state.audio.file, state.audio.name); data.append("audio_weight", state.audio.weight); }
    if (state.item) { data.append("item_id", state.item.id); data.append("item_weight", state.item.weight); }
    for (const box of form.querySelectorAll("input[name=modality]:checked")) data.append("modality", box.value);
    if (showBox.value !== "all") data.append("min_score", "auto");
    data.append("sort", sortBox.value);
    data.append("page", page);

    if (inFlight) inFlight.abort();
    inFlight = new AbortController();
    results.classList.add("loading");
    document.querySelector(".hero").classList.add("compact");
    try {
      const res = await fetch("/partials/results", { method: "POST", body: data, signal: inFlight.signal });
      results.innerHTML = await res.text();
      startAudioAtWindow();
      rememberUrl(text, page);
    } catch (err) {
      if (err.name === "AbortError") return;
      results.innerHTML = '<div class="notice error" role="alert"><strong>Offline?</strong> The search did not reach the server.</div>';
    } finally {
      results.classList.remove("loading");
    }
  }

  // text and item queries have a shareable URL; file queries do not
  function rememberUrl(text, page) {
    if (state.image || state.audio) return;
    const params = new URLSearchParams();
    if (text) params.set("q", text);
    for (const box of form.querySelectorAll("input[name=modality]:checked")) params.append("modality", box.value);
    if (state.item) params.set("like", state.item.id);
    if (showBox.value === "all") params.set("show", "all");
    if (sortBox.value !== "relevance") params.set("sort", sortBox.value);
    if (page > 1) params.set("page", page);
    history.replaceState(null, "", "/?" + params.toString());
  }

  // browsers without media-fragment support start at 0: seek to the matching window
  function startAudioAtWindow() {
    for (const audio of results.querySelectorAll("audio[data-start], video[data-start]")) {
      const start = Number(audio.dataset.start), end = Number(audio.dataset.end);
      audio.addEventListener("loadedmetadata", () => { if (audio.currentTime < start) audio.currentTime = start; }, { once: true });
      audio.addEventListener("timeupdate", () => { if (end > start && audio.currentTime > end + 0.25 && !audio.dataset.free) { audio.pause(); audio.dataset.free = "1"; } });
    }
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); renderParts(); search(1); });
  textBox.addEventListener("input", () => { if (partsBox.children.length) renderParts(); });
  for (const box of form.querySelectorAll("input[name=modality]")) {
    box.addEventListener("change", () => hasQuery() && search(1));
  }
  for (const box of [showBox, sortBox]) box.addEventListener("change", () => hasQuery() && search(1));

  results.addEventListener("click", (e) => {
    const like = e.target.closest("a[data-like]");
    if (like) {
      e.preventDefault();
      // "more like this" replaces the query with the item; add words to steer it
      textBox.value = "";
      state.image = null; state.audio = null;
      state.item = { id: like.dataset.like, name: like.dataset.name, thumb: like.dataset.thumb, weight: 1 };
      renderParts();
      search(1);
      window.scrollTo({ top: 0, behavior: "smooth" });
      return;
    }
    const pageLink = e.target.closest("a[data-page]");
    if (pageLink) {
      e.preventDefault();
      search(Number(pageLink.dataset.page));
      window.scrollTo({ top: 0, behavior: "smooth" });
    }
  });

  // ---- image and sound input: buttons, drag-and-drop, paste, microphone --------------------
  document.getElementById("add-image").addEventListener("click", () => imageInput.click());
  document.getElementById("add-audio")?.addEventListener("click", () => audioInput.click());
  imageInput.addEventListener("change", () => { if (imageInput.files[0]) setImage(imageInput.files[0]); imageInput.value = ""; });
  audioInput.addEventListener("change", () => { if (audioInput.files[0]) setAudio(audioInput.files[0]); audioInput.value = ""; });

  function takeFile(file) {
    if (!file) return false;
    if (file.type.startsWith("image/")) { setImage(file); return true; }
    if (file.type.startsWith("audio/")) { setAudio(file); return true; }
    return false;
  }
  let dragDepth = 0;
  document.addEventListener("dragenter", (e) => { if (e.dataTransfer.types.includes("Files")) { dragDepth++; dropzone.classList.add("dragging"); } });
  document.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; dropzone.classList.remove("dragging"); } });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    dragDepth = 0;
    dropzone.classList.remove("dragging");
    takeFile(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files || [])][0];
    if (takeFile(file)) e.preventDefault();
  });

  let recorder = null;
  recordBtn?.addEventListener("click", async () => {
    if (recorder) { recorder.stop(); return; }
    if (!navigator.mediaDevices?.getUserMedia || !window.MediaRecorder) {
      alert("This browser cannot record sound here (it needs https or localhost).");
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      alert("No microphone: " + err.message);
      return;
    }
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.addEventListener("dataavailable", (e) => chunks.push(e.data));
    recorder.addEventListener("stop", async () => {
      stream.getTracks().forEach((t) => t.stop());
      recordBtn.classList.remove("recording");
      recorder = null;
      const blob = new Blob(chunks, { type: chunks[0]?.type || "audio/webm" });
      // the server reads WAV/FLAC/OGG for sure: decode here and send 16 kHz mono WAV
      try { setAudio(await toWav(blob), "recording.wav"); } catch { setAudio(blob, "recording.webm"); }
    });
    recorder.start();
    recordBtn.classList.add("recording");
    setTimeout(() => recorder && recorder.state === "recording" && recorder.stop(), 10000);
  });

  async function toWav(blob) {
    const ctx = new OfflineAudioContext(1, 1, 16000);
    const decoded = await ctx.decodeAudioData(await blob.arrayBuffer());
    const rate = 16000;
    const offline = new OfflineAudioContext(1, Math.ceil(decoded.duration * rate), rate);
    const src = offline.createBufferSource();
    src.buffer = decoded;
    src.connect(offline.destination);
    src.start();
    const pcm = (await offline.startRendering()).getChannelData(0);
    const view = new DataView(new ArrayBuffer(44 + pcm.length * 2));
    const put = (o, s) => [...s].forEach((c, i) => view.setUint8(o + i, c.charCodeAt(0)));
    put(0, "RIFF"); view.setUint32(4, 36 + pcm.length * 2, true); put(8, "WAVEfmt ");
    view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
    view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true);
    view.setUint16(34, 16, true); put(36, "data"); view.setUint32(40, pcm.length * 2, true);
    pcm.forEach((v, i) => view.setInt16(44 + i * 2, Math.max(-1, Math.min(1, v)) * 0x7fff, true));
    return new Blob([view], { type: "audio/wav" });
  }

  renderParts();
  startAudioAtWindow();
})();
