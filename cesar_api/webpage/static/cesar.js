// Cesar's web page: submit audio or speak live, follow jobs, read, play, correct and download transcripts.
// Everything from the server or the person (file names, transcripts, errors) goes in as text, never as
// HTML: this file never assigns innerHTML. The API key lives in sessionStorage (this tab only) and goes
// out in an Authorization header, never in a URL; EventSource, which cannot send headers, uses the
// session cookie POST /session sets.
"use strict";

(() => {
  const FINAL = new Set(["completed", "error", "cancelled"]);
  const PAGE_SIZE = 25;
  // a browser opens at most six connections to one server over HTTP/1.1: streams leave room for the rest
  const MAX_STREAMS = 4;
  const REFRESH_MS = 5000; // the first page, for jobs submitted elsewhere and those without a stream
  const KEY_STORE = "cesar-api-key";
  const LIVE_RATE = 16000; // what the page sends a live session: 16-bit mono PCM at this rate
  // the most audio the page fetches from the server to play (it plays from memory: the CSP lets media come
  // only from blob: URLs, and an audio element could not send the API key)
  const MAX_FETCHED_AUDIO = 256 * 1024 * 1024;
  const LEADS = {
    400: "Not accepted", 401: "Not allowed", 404: "Not found", 409: "Not possible now",
    413: "Too large", 415: "Not an audio file", 422: "Not accepted", 429: "Limit reached",
    503: "The server cannot reach its database",
  };

  const $ = (id) => document.getElementById(id);
  let key = sessionStorage.getItem(KEY_STORE);
  let config = null;
  let started = false;
  let nextCursor = null;
  const jobs = new Map(); // id -> the job's JSON
  const rows = new Map(); // id -> its <li>
  const streams = new Map(); // id -> EventSource
  const localFiles = new Map(); // id -> the File this page uploaded, or the Blob it recorded (played from memory)
  let view = null; // the job shown: {id, segments: Map, url, editable, revision, speakers (as last shown), busy}
  // this page's corrections of each job, newest last: the revision each was made on and the one it made
  const undos = new Map();
  let keyTimer = null; // the key's line, asked for shortly (showKey)
  let renaming = null; // the speaker the rename dialog is for: {name, segment (one line) or null, focus}

  // --- helpers ---------------------------------------------------------------------------------------
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    node.append(...children);
    return node;
  }

  function clock(seconds) {
    const total = Math.max(0, Math.floor(seconds || 0));
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    const mm = String(m).padStart(h ? 2 : 1, "0"), ss = String(s).padStart(2, "0");
    return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString([], { dateStyle: "short", timeStyle: "medium" }) : "";
  }

  class ApiError extends Error {
    constructor(status, detail, code, extra) {
      super(detail);
      this.status = status;
      this.code = code;
      this.extra = extra || {};
    }
  }

  function readable(error) {
    if (!(error instanceof ApiError)) return `Cannot reach the server (${error.message})`;
    const lead = LEADS[error.status] || `Error ${error.status}`;
    return `${lead}: ${error.message}`;
  }

  function alertText(text) {
    const line = el("p", {}, el("span", { text }),
      el("button", { type: "button", class: "link", text: "Dismiss", onclick: () => line.remove() }));
    $("alerts").append(line);
  }

  function authHeaders(extra = {}) {
    const headers = new Headers(extra);
    if (key) headers.set("Authorization", `Bearer ${key}`);
    return headers;
  }

  async function errorOf(response) {
    let detail = response.statusText || "request failed", code = "", extra = null;
    try {
      const body = await response.json();
      detail = body.detail || detail;
      code = body.code || "";
      extra = body.extra;
    } catch (_ignored) { /* not JSON: keep the status text */ }
    return new ApiError(response.status, detail, code, extra);
  }

  async function api(path, options = {}) {
    const response = await fetch(path, { ...options, headers: authHeaders(options.headers) });
    if (response.status === 401) askKey();
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  // --- the API key -----------------------------------------------------------------------------------
  function askKey(message = "") {
    const dialog = $("key-dialog");
    $("key-error").textContent = message;
    if (!dialog.open) dialog.showModal();
  }

  async function useKey(event) {
    event.preventDefault();
    const candidate = $("key").value.trim();
    if (!candidate) return;
    const response = await fetch("/ui/config", { headers: { Authorization: `Bearer ${candidate}` } });
    if (!response.ok) {
      $("key-error").textContent = response.status === 401 ? "That key is not this server's." : readable(await errorOf(response));
      return;
    }
    key = candidate;
    sessionStorage.setItem(KEY_STORE, key);
    $("key").value = "";
    $("key-dialog").close();
    await openSession();
    if (!started) await start(await response.json());
    else {
      restartStreams();
      showKey();
    }
  }

  async function openSession() {
    // the cookie EventSource sends (it cannot send the key's header)
    if (key) await api("/session", { method: "POST" }).catch((error) => alertText(readable(error)));
  }

  async function forgetKey() {
    sessionStorage.removeItem(KEY_STORE);
    key = null;
    await fetch("/session", { method: "DELETE" });
    location.reload();
  }

  // --- whose jobs: the key's name and what is left of its limits --------------------------------------
  function hours(value) {
    return value >= 1 || value === 0 ? `${Number(value.toFixed(1))} h` : `${Math.max(1, Math.round(value * 60))} min`;
  }

  function describeKey(me) {
    // an admin (the server's own key, every caller of a server without keys) lists everyone's jobs
    const parts = [me.admin ? `All jobs (${me.name === "admin" ? "admin" : `${me.name}, admin`})` : `Jobs of ${me.name}`];
    if (me.limits.max_queued !== null) parts.push(`${me.usage.queued} of ${me.limits.max_queued} queued`);
    if (me.remaining.audio_hours_today !== null) parts.push(`${hours(me.remaining.audio_hours_today)} of audio left today`);
    return parts.join(" · ");
  }

  function showKey() {
    // once for a burst: dropping 500 files asks once, not 500 times against the key's request rate
    clearTimeout(keyTimer);
    keyTimer = setTimeout(async () => {
      try {
        const me = await (await api("/keys/me")).json();
        $("who").textContent = describeKey(me);
        $("who").hidden = false;
      } catch (_error) { /* the next list refresh asks again */ }
    }, 200);
  }

  // --- submitting ------------------------------------------------------------------------------------
  function fillForm() {
    const models = $("model");
    for (const name of config.models) models.append(el("option", { value: name, text: name }));
    const languages = $("language");
    languages.append(el("option", { value: "", text: "Detect automatically" }));
    const named = Object.entries(config.languages).sort((a, b) => a[1].localeCompare(b[1]));
    for (const [code, name] of named) {
      languages.append(el("option", { value: code, text: `${name[0].toUpperCase()}${name.slice(1)} (${code})` }));
    }
    const tasks = $("task");
    const labels = { transcribe: "Transcribe", translate: "Translate into English" };
    for (const task of config.tasks) tasks.append(el("option", { value: task, text: labels[task] || task }));
    $("drop").querySelector(".hint").prepend(`up to ${config.max_upload_mb} MiB each; `);
  }

  function options() {
    const fields = { model: $("model").value, task: $("task").value };
    if ($("language").value) fields.language = $("language").value;
    if ($("words").checked) fields.word_timestamps = "true";
    if ($("diarize").checked) fields.diarize = "true";
    return fields;
  }

  function submit(event) {
    event.preventDefault();
    const files = [...$("files").files];
    const url = $("url").value.trim();
    if (!files.length && !url) {
      alertText("Choose or drop a file, or enter a URL.");
      return;
    }
    const fields = options();
    for (const file of files) upload(file, fields);
    if (url) submitUrl(url, fields);
    $("files").value = "";
    $("url").value = "";
  }

  function upload(file, fields) {
    const status = el("span", { class: "status", text: "uploading" });
    const bar = el("progress", { max: "1", value: "0", "aria-label": `Upload of ${file.name}` });
    const item = el("li", {}, el("span", { class: "name", text: file.name }), status, bar);
    $("uploads").prepend(item);
    const form = new FormData();
    form.append("file", file, file.name);
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    const request = new XMLHttpRequest();
    request.open("POST", "/transcribe");
    if (key) request.setRequestHeader("Authorization", `Bearer ${key}`);
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) bar.value = event.loaded / event.total;
    });
    request.addEventListener("load", () => {
      const body = request.response || {};
      if (request.status === 200 || request.status === 202) {
        bar.value = 1;
        status.textContent = "submitted";
        localFiles.set(body.id, file);
        show(body);
        follow();
        showKey();
        return;
      }
      if (request.status === 401) askKey();
      // a 429 names the limit the key reached (max_queued, audio_hours_per_day, requests_per_second)
      const error = new ApiError(request.status, body.detail || request.statusText || "upload failed", body.code);
      failed(item, status, bar, readable(error));
      if (request.status === 429) showKey();
    });
    request.addEventListener("error", () => failed(item, status, bar, "The upload did not reach the server."));
    request.send(form);
  }

  function failed(item, status, bar, message) {
    // said once, beside the file's name; the bar goes, so that it is not left full as if the file went through
    status.textContent = "failed";
    status.className = "status error";
    bar.remove();
    item.append(el("p", { class: "error", role: "alert", text: message }));
  }

  async function submitUrl(url, fields) {
    try {
      const response = await api("/transcribe/url", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          url, ...fields, word_timestamps: fields.word_timestamps === "true", diarize: fields.diarize === "true",
        }),
      });
      show(await response.json());
      follow();
      showKey();
    } catch (error) {
      alertText(`${url}: ${readable(error)}`);
    }
  }

  function dropZone() {
    const zone = $("drop");
    for (const name of ["dragenter", "dragover"]) {
      zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); });
    }
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      if (event.dataTransfer && event.dataTransfer.files.length) {
        $("files").files = event.dataTransfer.files;
        $("submit").focus();
      }
    });
  }

  // --- the job list ----------------------------------------------------------------------------------
  function jobName(job) {
    const name = job.audio_path || (job.source === "live" ? "Live session" : job.id);
    // a voice sample for the voice library (POST /speakers): read into a voice print, no transcript
    return job.source === "sample" ? `Voice sample: ${name}` : name;
  }

  function describe(job) {
    const parts = [job.model];
    if (job.duration) parts.push(clock(job.duration));
    if (job.status === "queued" && job.queue_position) parts.push(`queue position ${job.queue_position}`);
    if (job.status === "processing") parts.push(`${Math.round((job.progress || 0) * 100)} %`);
    parts.push(when(job.created_at));
    return parts.join(" · ");
  }

  function show(job) {
    const known = jobs.get(job.id);
    if (known && job.revision < known.revision) return; // a list asked for before a correction
    jobs.set(job.id, job);
    let row = rows.get(job.id);
    if (!row) {
      row = el("li", { "data-job": job.id },
        el("button", { type: "button", class: "job", onclick: () => openJob(job.id) },
          el("span", { class: "name" }), el("span", { class: "status" }), el("span", { class: "details" }),
          el("progress", { max: "1", value: "0", "aria-label": "Progress" })));
      rows.set(job.id, row);
      const list = $("jobs");
      const later = [...list.children].find((other) => jobs.get(other.dataset.job).created_at < job.created_at);
      list.insertBefore(row, later || null);
      $("no-jobs").hidden = true;
    }
    // updated in place: a person using the keyboard keeps the focus on a row while it changes
    const button = row.firstElementChild;
    button.querySelector(".name").textContent = jobName(job);
    const status = button.querySelector(".status");
    status.textContent = job.status;
    status.className = `status ${job.status}`;
    button.querySelector(".details").textContent = describe(job);
    const bar = button.querySelector("progress");
    bar.value = job.progress || 0;
    bar.hidden = FINAL.has(job.status);
    if (view && view.id === job.id) {
      button.setAttribute("aria-current", "true");
      showDetails(job);
    } else {
      button.removeAttribute("aria-current");
    }
  }

  function forget(id) {
    jobs.delete(id);
    const row = rows.get(id);
    if (row) row.remove();
    rows.delete(id);
    stopStream(id);
    $("no-jobs").hidden = rows.size > 0;
  }

  async function loadJobs(cursor) {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (cursor) query.set("cursor", cursor);
    const response = await api(`/jobs?${query}`);
    const page = await response.json();
    for (const job of page) show(job);
    if (cursor || nextCursor === null) {
      nextCursor = response.headers.get("X-Next-Cursor");
      $("older").hidden = !nextCursor;
    }
    listed();
  }

  function listed() {
    $("jobs-loading").hidden = true;
    $("no-jobs").hidden = rows.size > 0;
    follow();
  }

  async function refresh() {
    if (document.hidden) return;
    try {
      const response = await api(`/jobs?limit=${PAGE_SIZE}`);
      for (const job of await response.json()) show(job);
      listed();
      showKey();
    } catch (_error) { /* the next refresh tries again; errors the person caused are shown where made */ }
  }

  // --- live updates ----------------------------------------------------------------------------------
  function follow() {
    const active = [...jobs.values()].filter((job) => !FINAL.has(job.status));
    active.sort((a, b) => (b.created_at < a.created_at ? -1 : 1));
    if (view) active.sort((a, b) => (a.id === view.id ? -1 : b.id === view.id ? 1 : 0));
    for (const job of active) {
      if (streams.size >= MAX_STREAMS) break;
      if (!streams.has(job.id)) openStream(job.id);
    }
  }

  function openStream(id) {
    const source = new EventSource(`/jobs/${encodeURIComponent(id)}/events`);
    streams.set(id, source);
    const update = (event) => show(JSON.parse(event.data));
    source.addEventListener("job", update);
    source.addEventListener("segment", (event) => {
      if (view && view.id === id) addSegment(JSON.parse(event.data));
    });
    source.addEventListener("end", (event) => {
      stopStream(id);
      update(event);
      if (view && view.id === id) loadTranscript(id);
      follow();
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) { // refused (no session?): the refresh polls instead
        stopStream(id);
      }
    });
  }

  function stopStream(id) {
    const source = streams.get(id);
    if (source) source.close();
    streams.delete(id);
  }

  function restartStreams() {
    for (const id of [...streams.keys()]) stopStream(id);
    follow();
  }

  // --- one job ---------------------------------------------------------------------------------------
  function openJob(id) {
    const job = jobs.get(id);
    if (!job) return;
    const previous = view;
    if (previous && previous.url) URL.revokeObjectURL(previous.url);
    view = { id, segments: new Map(), url: null, editable: false, revision: undefined, speakers: "", busy: false };
    if (previous && rows.get(previous.id)) show(jobs.get(previous.id));
    $("job").hidden = false;
    $("segments").replaceChildren();
    $("segments").removeAttribute("aria-busy");
    const player = $("player");
    const file = localFiles.get(id);
    player.hidden = !file;
    player.removeAttribute("src");
    if (file) play(file);
    else if (config.keep_audio && job.status === "completed" && job.source !== "url") fetchAudio(id);
    show(job);
    if (job.status === "completed") loadTranscript(id);
    else if (!FINAL.has(job.status)) {
      stopStream(id); // a new stream replays the segments decoded so far, then the rest live
      if (streams.size >= MAX_STREAMS) stopStream(streams.keys().next().value);
      openStream(id);
    }
    $("job").scrollIntoView({ block: "nearest" });
    $("job-title").focus();
  }

  function play(blob) {
    view.url = URL.createObjectURL(blob);
    const player = $("player");
    player.src = view.url;
    player.hidden = false;
  }

  async function fetchAudio(id) {
    // the server keeps a finished job's audio (CESAR_KEEP_AUDIO) and this page holds no copy of it
    try {
      const response = await api(`/jobs/${encodeURIComponent(id)}/audio`);
      if (Number(response.headers.get("Content-Length")) > MAX_FETCHED_AUDIO) {
        await response.body.cancel();
        return;
      }
      const blob = await response.blob();
      if (view && view.id === id && !view.url) {
        play(blob);
        loadTranscript(id); // again: the segments' times were shown plain, with nothing to seek in
      }
    } catch (_error) { /* no audio stored (a URL job, a finished job from before): nothing to play */ }
  }

  function closeJob() {
    if (!view) return;
    const id = view.id;
    if (view.url) URL.revokeObjectURL(view.url);
    $("player").removeAttribute("src");
    view = null;
    $("job").hidden = true;
    $("speaker-list").hidden = true;
    $("speakers").replaceChildren();
    $("edit-hint").hidden = true;
    if (jobs.has(id)) show(jobs.get(id));
  }

  function showDetails(job) {
    $("job-title").textContent = jobName(job);
    $("job-title").setAttribute("tabindex", "-1");
    const facts = [`Status: ${job.status}`, `model ${job.model}`];
    if (job.detected_language) facts.push(`language ${job.detected_language}`);
    if (job.duration) facts.push(`audio ${clock(job.duration)}`);
    if (job.status === "queued" && job.queue_position) facts.push(`queue position ${job.queue_position}`);
    facts.push(`submitted ${when(job.created_at)}`);
    if (job.completed_at) facts.push(`ended ${when(job.completed_at)}`);
    const meta = $("job-meta");
    meta.replaceChildren(facts.join(" · "));
    if (job.error_message && job.status !== "completed") {
      meta.append(el("span", { class: "error", text: ` ${job.error_message}` }));
    }
    const progress = $("job-progress");
    progress.value = job.status === "completed" ? 1 : job.progress || 0;
    progress.hidden = FINAL.has(job.status) && job.status !== "completed";
    $("cancel").disabled = FINAL.has(job.status);
    $("delete").disabled = !FINAL.has(job.status);
    const downloads = $("downloads");
    if (job.status === "completed" && !downloads.childElementCount) {
      // rttm is the speaker turns: a job without diarize has none (the server answers 409)
      for (const format of config.formats.filter((name) => name !== "rttm" || job.options.diarize)) {
        downloads.append(el("button", { type: "button", text: format.toUpperCase(), "aria-label": `Download ${format}`,
          onclick: () => download(job, format) }));
      }
    } else if (job.status !== "completed") {
      downloads.replaceChildren();
    }
    showSpeakers(job);
    if (job.status === "completed" && job.revision > view.revision && !view.busy && !$("segments").querySelector(".editor")) {
      loadTranscript(job.id); // corrected elsewhere meanwhile
    }
    showUndo();
  }

  function addSegment(segment) {
    if (!view || view.segments.has(segment.id)) return;
    view.segments.set(segment.id, segment);
    const seekable = !$("player").hidden;
    const stamp = seekable
      ? el("button", { type: "button", class: "ts", text: clock(segment.start), "aria-label": `Play from ${clock(segment.start)}`,
        onclick: () => seek(segment.start) })
      : el("span", { class: "ts", text: clock(segment.start) });
    const text = el("span", { class: "text", text: segment.text.trim() });
    const line = el("span", { class: "line" }, text);
    if (view.editable) {
      // a line is a button to the keyboard (Tab, then Enter or Space); a click that selects words does not edit
      Object.assign(text, { tabIndex: 0, title: "Correct this line" });
      text.setAttribute("role", "button");
      text.addEventListener("click", () => { if (!getSelection().toString()) editText(segment, text); });
      text.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          editText(segment, text);
        }
      });
    }
    if (segment.speaker) {
      line.prepend(view.editable
        ? el("button", { type: "button", class: "speaker", text: segment.speaker, "aria-label": `Speaker ${segment.speaker}: rename`,
          onclick: () => openRename(segment.speaker, segment, () => document.querySelector(`[data-segment="${segment.id}"] .speaker`)) })
        : el("span", { class: "speaker", text: segment.speaker }), " ");
    }
    const item = el("li", { "data-start": String(segment.start), "data-end": String(segment.end), "data-segment": String(segment.id) },
      stamp, line);
    const list = $("segments");
    const after = [...list.children].find((other) => Number(other.dataset.start) > segment.start);
    list.insertBefore(item, after || null);
    $("copy").disabled = false;
  }

  async function loadTranscript(id) {
    try {
      const response = await api(`/jobs/${encodeURIComponent(id)}/transcript?format=json`);
      const revision = response.headers.get("X-Transcript-Revision");
      render(id, { ...await response.json(), revision: revision === null ? undefined : Number(revision) });
    } catch (error) {
      alertText(readable(error));
    }
  }

  function render(id, transcript) {
    if (!view || view.id !== id) return;
    // the transcript replaces what came live: diarized segments are split where the speaker changes
    view.segments.clear();
    view.editable = jobs.get(id).status === "completed";
    view.revision = transcript.revision; // what a correction is made on
    $("edit-hint").hidden = !view.editable;
    $("segments").replaceChildren();
    for (const segment of transcript.segments) addSegment(segment);
    showUndo();
  }

  // --- corrections -----------------------------------------------------------------------------------
  // Each correction is a PATCH of the revision shown; a 409 means someone else's came first: the page says
  // so and shows theirs. Undo restores the revision this page's last correction was made on (the server's
  // `restore`, word times and all) as a new revision, so the history keeps both; it is offered while the
  // transcript is still the one that correction (or the undo before) made, so it never undoes someone
  // else's, and only for this page's corrections since it was opened. A voice remembered stays in the
  // library after an undo (remove it there).
  function editText(segment, node) {
    if (node.hidden || view.busy) return; // one correction at a time
    const editor = el("textarea", { class: "editor", rows: "2", "aria-label": `Text at ${clock(segment.start)}`,
      "aria-describedby": "edit-hint" });
    editor.value = segment.text.trim();
    node.hidden = true;
    node.after(editor);
    editor.focus();
    let open = true;
    const finish = (save, refocus) => {
      if (!open) return;
      open = false;
      const text = editor.value.replace(/\s+/g, " ").trim(); // one line, as the server keeps it
      editor.remove();
      node.hidden = false;
      const again = () => document.querySelector(`[data-segment="${segment.id}"] .text`);
      if (save && text !== segment.text.trim()) correct([{ op: "text", segment: segment.id, text }], refocus && again);
      else if (refocus) node.focus();
    };
    editor.addEventListener("keydown", (event) => {
      if (event.key === "Enter") { // Shift+Enter does nothing: a segment has no line breaks
        event.preventDefault();
        if (!event.shiftKey) finish(true, true);
      } else if (event.key === "Escape") {
        event.stopPropagation(); // the job stays open
        finish(false, true);
      }
    });
    editor.addEventListener("blur", () => finish(true, false)); // a click elsewhere keeps the correction
  }

  async function correct(edits, focus, undoing = false) {
    const id = view.id, base = view.revision;
    const stack = undos.get(id) || [];
    undos.set(id, stack);
    view.busy = true;
    $("segments").setAttribute("aria-busy", "true");
    let transcript = null; // the new revision
    try {
      const response = await api(`/jobs/${encodeURIComponent(id)}/transcript`, {
        method: "PATCH",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ revision: base, edits }),
      });
      transcript = await response.json();
      if (!undoing) stack.push({ base, revision: transcript.revision });
      else if (stack.pop() && stack.length) stack[stack.length - 1].revision = transcript.revision; // as it was then
    } catch (error) {
      alertText(error.status === 409 && error.extra.revision !== undefined
        ? "Someone else corrected this transcript first: yours was not saved. Theirs is shown now; correct it again if still needed."
        : readable(error));
    }
    // the job's speakers (with what the library matched) and revision, then its transcript
    await api(`/jobs/${encodeURIComponent(id)}`).then((response) => response.json()).then(show).catch(() => {});
    if (transcript) render(id, transcript);
    else await loadTranscript(id);
    if (!view || view.id !== id) return;
    view.busy = false;
    $("segments").removeAttribute("aria-busy");
    if (focus) { // where the person was, else the job's title (the undo button goes once nothing is left to undo)
      const target = focus();
      (target && !target.hidden ? target : $("job-title")).focus();
    }
  }

  function showUndo() {
    const stack = (view && undos.get(view.id)) || [];
    $("undo").hidden = !stack.length || stack[stack.length - 1].revision !== view.revision;
  }

  function undo() {
    const stack = undos.get(view.id) || [];
    if (!view.busy && stack.length) correct([{ op: "restore", revision: stack[stack.length - 1].base }], () => $("undo"), true);
  }

  function speakerButton(name) {
    return [...$("speakers").querySelectorAll(".speaker")].find((button) => button.textContent === name);
  }

  function showSpeakers(job) {
    const speakers = (job.status === "completed" && job.speakers) || [];
    const shown = JSON.stringify(speakers);
    if (view.speakers === shown) return; // unchanged: a name that has the focus keeps it
    view.speakers = shown;
    $("speakers").replaceChildren(...speakers.map((speaker) => {
      const item = el("li", {},
        el("button", { type: "button", class: "speaker", text: speaker.speaker, "aria-label": `Rename ${speaker.speaker}`,
          onclick: () => openRename(speaker.speaker, null, speakerButton) }),
        el("span", { class: "meta", text: ` ${clock(speaker.duration)} talking` }));
      if (speaker.speaker_id != null) { // named by the voice library: how close the voice was
        const close = speaker.distance == null ? "" : ` at distance ${Number(speaker.distance).toFixed(3)}`;
        item.append(" ", el("span", { class: "badge", title: `Recognised from the voice library${close}`, text: "known voice" }));
      }
      return item;
    }));
    $("speaker-list").hidden = !speakers.length;
  }

  function openRename(name, segment, focus) {
    const job = jobs.get(view.id);
    renaming = { name, segment, focus };
    $("speaker-title").textContent = `Rename ${name}`;
    $("speaker-name").value = name;
    $("one-line").checked = false;
    $("one-line-field").hidden = !segment;
    $("remember").checked = false;
    $("remember").disabled = false;
    // a voice to remember: the diarizer's (a name an edit made up has none)
    $("remember-field").hidden = !(job.speakers || []).some((speaker) => speaker.speaker === name && speaker.label);
    // the names offered: this job's speakers, then the library's people
    const names = new Set((job.speakers || []).map((speaker) => speaker.speaker));
    const list = $("known-speakers");
    const fill = () => list.replaceChildren(...[...names].map((known) => el("option", { value: known })));
    fill();
    $("speaker-dialog").showModal();
    $("speaker-name").select();
    api("/speakers").then((response) => response.json()).then((library) => {
      for (const person of library.speakers) names.add(person.name);
      fill();
    }).catch(() => {}); // no library: free text only
  }

  function rename(event) {
    event.preventDefault();
    $("speaker-dialog").close();
    const to = $("speaker-name").value.replace(/\s+/g, " ").trim();
    const { name, segment, focus } = renaming;
    const remember = $("remember").checked && !$("remember-field").hidden;
    if (!to || (to === name && !remember)) return;
    const again = () => focus(to);
    if (segment && $("one-line").checked) correct([{ op: "speaker", segment: segment.id, speaker: to }], again);
    else correct([{ op: "rename", speaker: name, to, remember }], again);
  }

  function seek(seconds) {
    const player = $("player");
    player.currentTime = seconds;
    player.play().catch(() => {});
  }

  function highlight() {
    const now = $("player").currentTime;
    for (const item of $("segments").children) {
      const inside = Number(item.dataset.start) <= now && now < Number(item.dataset.end);
      item.classList.toggle("current", inside);
    }
  }

  async function cancel() {
    if (!view) return;
    try {
      const response = await api(`/jobs/${encodeURIComponent(view.id)}/cancel`, { method: "POST" });
      show(await response.json());
    } catch (error) {
      alertText(readable(error));
    }
  }

  let deleteArmed = null;
  async function remove() {
    if (!view) return;
    const button = $("delete");
    if (deleteArmed !== view.id) { // a second click confirms
      deleteArmed = view.id;
      button.textContent = "Confirm delete";
      setTimeout(() => { deleteArmed = null; button.textContent = "Delete"; }, 4000);
      return;
    }
    deleteArmed = null;
    button.textContent = "Delete";
    const id = view.id;
    try {
      await api(`/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
      closeJob();
      forget(id);
    } catch (error) {
      alertText(readable(error));
    }
  }

  async function copy() {
    if (!view) return;
    const text = [...view.segments.values()].sort((a, b) => a.start - b.start).map((s) => s.text.trim()).join(" ");
    try {
      await navigator.clipboard.writeText(text);
    } catch (_error) { // no clipboard API (a plain-http address): the old way
      const area = el("textarea", { readonly: "" });
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    $("copy").textContent = "Copied";
    setTimeout(() => { $("copy").textContent = "Copy text"; }, 1500);
  }

  async function download(job, format) {
    try {
      const response = await api(`/jobs/${encodeURIComponent(job.id)}/transcript?format=${format}`);
      const blob = await response.blob();
      const disposition = response.headers.get("Content-Disposition") || "";
      const named = /filename="([^"]+)"/.exec(disposition);
      const base = (job.audio_path || job.id).split(/[\\/]/).pop().replace(/\.[^.]*$/, "");
      const link = el("a", { href: URL.createObjectURL(blob), download: named ? named[1] : `${base}.${format}` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 30000);
    } catch (error) {
      alertText(readable(error));
    }
  }

  // --- live from the microphone ----------------------------------------------------------------------
  // getUserMedia feeds an AudioWorklet (live-worklet.js, from this server: the CSP allows no other script)
  // that makes 16 kHz PCM of it; the page sends that over the GET /live WebSocket (with an API key, the
  // session cookie opens it) and keeps a copy, played back once the session is a job.
  let live = null; // the session under way: its socket, audio graph, the PCM recorded and what was sent

  function liveUnsupported() {
    if (!window.isSecureContext || !navigator.mediaDevices) {
      return "Live transcription needs the microphone, which a browser gives only to a secure page: open "
        + "Cesar over https, or at localhost on the computer it runs on.";
    }
    if (!window.AudioWorkletNode || !window.WebSocket) {
      return "This browser cannot send live audio (it lacks AudioWorklet): upload a recording instead.";
    }
    return "";
  }

  function liveMessage(text) {
    $("live-error").textContent = text;
    $("live-error").hidden = !text;
  }

  function liveState(button, status) {
    const start = $("live-start");
    start.textContent = button;
    start.disabled = button !== "Start live" && button !== "Stop";
    start.classList.toggle("recording", button === "Stop");
    $("live-status").textContent = status;
  }

  function microphoneRefused(error) {
    if (error.name === "NotAllowedError" || error.name === "SecurityError") {
      return "The browser refused the microphone: allow it for this page (in the address bar, or the "
        + "browser's site settings) and press Start live again.";
    }
    if (error.name === "NotFoundError" || error.name === "OverconstrainedError") {
      return "No microphone was found: connect one and press Start live again.";
    }
    if (error.name === "NotReadableError") {
      return "The microphone cannot be read: another program may be using it.";
    }
    return `The microphone could not be opened (${error.name}: ${error.message}).`;
  }

  async function startLive() {
    if (live) {
      stopLive();
      return;
    }
    liveMessage("");
    liveState("Starting…", "Asking for the microphone…");
    // made during the click: some browsers keep an audio context made later suspended
    const context = new AudioContext();
    let stream;
    try {
      // the browser's echo cancelling, noise suppression and gain control reshape speech: Whisper hears
      // the raw signal better
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (error) {
      context.close();
      liveState("Start live", "");
      liveMessage(microphoneRefused(error));
      return;
    }
    let node;
    try {
      await context.audioWorklet.addModule("/ui/live-worklet.js");
      node = new AudioWorkletNode(context, "cesar-pcm", { numberOfOutputs: 0, processorOptions: { rate: LIVE_RATE } });
      context.createMediaStreamSource(stream).connect(node);
    } catch (error) {
      stream.getTracks().forEach((track) => track.stop());
      context.close();
      liveState("Start live", "");
      liveMessage(`The page could not process the microphone's audio (${error.message}).`);
      return;
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/live`);
    socket.binaryType = "arraybuffer";
    live = { socket, context, stream, node, pcm: [], sent: 0, flushed: false, stopSent: false, over: false };
    const session = live;
    $("live-confirmed").replaceChildren();
    $("live-tentative").textContent = "";
    $("live-level").hidden = false;
    liveState("Stop", "Connecting…");
    node.port.onmessage = (event) => {
      if (event.data.flushed) {
        session.flushed = true;
        releaseMicrophone(session);
      } else {
        session.pcm.push(event.data.pcm);
        // it falls back slowly: a meter that drops to nothing between two words looks broken
        $("live-level").value = Math.max(event.data.peak, $("live-level").value * 0.7);
      }
      sendLive(session);
    };
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify(liveStart()));
      sendLive(session);
    });
    socket.addEventListener("message", (event) => liveEvent(session, JSON.parse(event.data)));
    socket.addEventListener("close", (event) => liveClosed(session, event));
  }

  function liveStart() {
    const fields = options();
    const start = { type: "start", model: fields.model, task: fields.task, audio: { format: "pcm_s16le", sample_rate: LIVE_RATE } };
    if (fields.language) start.language = fields.language;
    start.word_timestamps = fields.word_timestamps === "true";
    if (fields.diarize) start.diarize = true;
    return start;
  }

  function sendLive(session) {
    // what the socket can take now, in order: the audio recorded so far, then stop once it is all flushed
    const { socket } = session;
    if (socket.readyState !== WebSocket.OPEN) return;
    while (session.sent < session.pcm.length) socket.send(session.pcm[session.sent++]);
    if (session.flushed && !session.stopSent) {
      socket.send(JSON.stringify({ type: "stop" }));
      session.stopSent = true;
    }
  }

  function stopLive() {
    liveState("Finishing…", "Transcribing the last words…");
    live.node.port.postMessage("flush");
  }

  function releaseMicrophone(session) {
    session.stream.getTracks().forEach((track) => track.stop());
    if (session.context.state !== "closed") session.context.close();
    $("live-level").value = 0;
    $("live-level").hidden = true;
  }

  function liveEvent(session, event) {
    if (event.type === "session") {
      if (!session.flushed) liveState("Stop", "Listening: speak now.");
      show(event.job);
    } else if (event.type === "segment") {
      $("live-confirmed").append(el("span", { class: "confirmed", "data-segment": String(event.id), text: `${event.text.trim()} ` }));
    } else if (event.type === "tentative") {
      $("live-tentative").textContent = event.text.trim();
    } else if (event.type === "job") {
      show(event.job);
    } else if (event.type === "error") {
      liveMessage(`Live transcription stopped: ${event.message}`);
    } else if (event.type === "final") {
      session.over = true;
      $("live-tentative").textContent = "";
      localFiles.set(event.job.id, recording(session.pcm));
      show(event.job);
      openJob(event.job.id);
      showKey();
    }
  }

  function liveClosed(session, event) {
    releaseMicrophone(session);
    if (!session.over && !$("live-error").textContent) {
      liveMessage(`The connection to the server closed (${event.code}${event.reason ? `: ${event.reason}` : ""}).`);
    }
    if (live === session) live = null;
    liveState("Start live", session.over ? "Done: the session is now a job." : "");
  }

  function recording(chunks) {
    // a WAV file of what was sent: the browser plays it, and the session's job plays from it
    const bytes = chunks.reduce((total, chunk) => total + chunk.byteLength, 0);
    const header = new DataView(new ArrayBuffer(44));
    const text = (offset, value) => [...value].forEach((char, index) => header.setUint8(offset + index, char.charCodeAt(0)));
    text(0, "RIFF");
    header.setUint32(4, 36 + bytes, true);
    text(8, "WAVEfmt ");
    header.setUint32(16, 16, true);
    header.setUint16(20, 1, true); // PCM
    header.setUint16(22, 1, true); // mono
    header.setUint32(24, LIVE_RATE, true);
    header.setUint32(28, LIVE_RATE * 2, true);
    header.setUint16(32, 2, true);
    header.setUint16(34, 16, true);
    text(36, "data");
    header.setUint32(40, bytes, true);
    return new Blob([header, ...chunks], { type: "audio/wav" });
  }

  function setUpLive() {
    $("live").hidden = false;
    const unsupported = liveUnsupported();
    $("live-start").disabled = Boolean(unsupported);
    liveMessage(unsupported);
  }

  // --- start -----------------------------------------------------------------------------------------
  async function start(loaded) {
    started = true;
    config = loaded;
    $("forget-key").hidden = !config.api_key;
    fillForm();
    $("submit").disabled = false;
    setUpLive();
    await loadJobs(null).catch((error) => {
      $("jobs-loading").textContent = "The jobs could not be loaded: trying again every few seconds.";
      alertText(readable(error));
    });
    showKey();
    setInterval(refresh, REFRESH_MS);
    window.cesarReadyMs = performance.now();
    document.documentElement.dataset.ready = "true";
  }

  function wire() {
    $("submit-form").addEventListener("submit", submit);
    $("key-form").addEventListener("submit", (event) => { useKey(event).catch((error) => { $("key-error").textContent = readable(error); }); });
    $("key-dialog").addEventListener("cancel", (event) => event.preventDefault());
    $("forget-key").addEventListener("click", forgetKey);
    $("older").addEventListener("click", () => loadJobs(nextCursor).catch((error) => alertText(readable(error))));
    $("close-job").addEventListener("click", closeJob);
    $("cancel").addEventListener("click", cancel);
    $("delete").addEventListener("click", remove);
    $("copy").addEventListener("click", copy);
    $("undo").addEventListener("click", undo);
    $("speaker-form").addEventListener("submit", rename);
    $("speaker-cancel").addEventListener("click", () => $("speaker-dialog").close());
    $("speaker-dialog").addEventListener("close", () => {
      const opener = renaming && renaming.focus(renaming.name);
      if (opener) opener.focus();
    });
    $("one-line").addEventListener("change", () => { $("remember").disabled = $("one-line").checked; });
    $("live-start").addEventListener("click", () => startLive().catch((error) => liveMessage(`Live transcription failed: ${error.message}`)));
    $("player").addEventListener("timeupdate", highlight);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && view && !$("speaker-dialog").open) closeJob();
    });
    dropZone();
  }

  async function main() {
    wire();
    const response = await fetch("/ui/config", { headers: authHeaders() });
    if (response.status === 401) {
      key = null;
      sessionStorage.removeItem(KEY_STORE);
      askKey();
      return;
    }
    if (!response.ok) {
      alertText(readable(await errorOf(response)));
      return;
    }
    if (key) await openSession();
    await start(await response.json());
  }

  main().catch((error) => alertText(readable(error)));
})();
