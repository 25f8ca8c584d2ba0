// passhouse issuer dashboard: a client of the admin API (/api/v1), nothing more.
// Every value from the server reaches the page through textContent or an attribute
// set by the DOM API; nothing in this file parses a string as HTML.
"use strict";

(function () {
  const KEY_NAME = "passhouse.apiKey";
  const PAGE_SIZE = 50;
  const SOON_DAYS = 30;

  // --- DOM helpers ---------------------------------------------------------------------

  // h("a", {href: "#/x", class: "y"}, "text", child, ...): strings become text nodes.
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (value === true) node.setAttribute(name, "");
      else node.setAttribute(name, String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const $ = (id) => document.getElementById(id);
  const view = $("view");

  function announce(message) {
    $("status").textContent = message;
  }

  function banner(kind, ...content) {
    return h("p", { class: `banner ${kind}`, role: kind.startsWith("error") ? "alert" : null }, ...content);
  }

  // An error banner at the top of the current view, replacing the previous one.
  function showError(error) {
    const message = error instanceof Error ? error.message : String(error);
    view.querySelector(":scope > .banner.error.transient")?.remove();
    const node = banner("error transient", message);
    const heading = view.querySelector("h1");
    if (heading) heading.after(node);
    else view.prepend(node);
    node.scrollIntoView({ block: "nearest" });
  }

  function clearError() {
    view.querySelector(":scope > .banner.error.transient")?.remove();
    for (const node of view.querySelectorAll(".banner.error.form-error")) node.remove();
  }

  // A form's refusal, shown inside the form just above its submit button. Not at the top of
  // the view: there it scrolled the page away from the form, and on the templates page the
  // retry's click then landed in a gallery preview frame (sandboxed frames are hit-tested
  // apart from the page while it scrolls), so a second upload was never sent.
  function showFormError(form, error) {
    const message = error instanceof Error ? error.message : String(error);
    for (const node of form.querySelectorAll(".banner.error.form-error")) node.remove();
    const node = banner("error form-error", message);
    const button = form.querySelector("button[type=submit], button:not([type])");
    if (button) button.before(node);
    else form.append(node);
    node.scrollIntoView({ block: "nearest" });
  }

  const NUMERIC = new Set(["Passes", "Revision", "Version", "Installs", "HTTP status", "Latency (ms)", "Pending", "Delivered", "Failed", "Attempts"]);

  function head(headers) {
    return h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col", class: NUMERIC.has(name) ? "num" : null }, name))));
  }

  function table(headers, rows, caption) {
    return h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        {},
        caption ? h("caption", {}, caption) : null,
        head(headers),
        h("tbody", {}, rows)
      )
    );
  }

  // The one way a time is shown. The API sends ISO 8601 UTC text ("2026-11-22T14:00:00Z");
  // a number is Unix milliseconds (push attempts' at_ms, until that endpoint sends ISO too).
  function when(value) {
    if (value === null || value === undefined || value === "") return "—";
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    const iso = typeof value === "string" ? value : date.toISOString();
    return h("time", { datetime: iso, title: iso }, date.toLocaleString());
  }

  function duration(seconds) {
    const s = Math.round(Number(seconds));
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${Math.round(s / 3600)} h`;
    return `${Math.round(s / 86400)} days`;
  }

  // "oldest_pending_age_seconds" -> "Oldest pending age": the value shows its own unit.
  function humanize(key) {
    const text = key
      .replace(/_(seconds|ms)$/, "")
      .replace(/_/g, " ")
      .replace(/\bapns\b/gi, "APNs")
      .replace(/\bid\b/g, "ID");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  // Push tokens and device ids are credentials: the API shortens them, and so does the page
  // where it still gets them whole (the same shape, so a shortened one passes unchanged).
  function shorten(value) {
    const text = String(value);
    return text.length <= 13 ? text : `${text.slice(0, 8)}…${text.slice(-4)}`;
  }

  function definitions(pairs) {
    return h(
      "dl",
      { class: "facts" },
      pairs.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])
    );
  }

  function safeHref(url) {
    // Links come from the server's configured public URL; refuse anything but http(s).
    return /^https?:\/\//i.test(String(url)) ? String(url) : null;
  }

  // --- the API ---------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return String(body.error.message);
    } catch (_) {
      // not JSON: fall through to the status line
    }
    return `The server answered ${response.status} ${response.statusText}`.trim();
  }

  async function api(path, { method = "GET", json, form, raw = false } = {}) {
    const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY_NAME) || ""}` };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form; // the browser sets the multipart boundary
    }
    let response;
    try {
      response = await fetch(`/api/v1${path}`, { method, headers, body, credentials: "omit" });
    } catch (error) {
      throw new ApiError(`Could not reach the server: ${error.message}`, 0);
    }
    if (response.status === 401) {
      const message = await errorMessage(response);
      signOut(message);
      throw new ApiError(message, 401);
    }
    if (!response.ok) throw new ApiError(await errorMessage(response), response.status);
    if (raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }

  const passPath = (p) =>
    `/passes/${encodeURIComponent(p.pass_type_id)}/${encodeURIComponent(p.serial_number)}`;
  const passHash = (p) =>
    `#/passes/${encodeURIComponent(p.pass_type_id)}/${encodeURIComponent(p.serial_number)}`;
  const templateHash = (name) => `#/templates/${encodeURIComponent(name)}`;

  // --- signing in and out ----------------------------------------------------------------

  function signOut(message) {
    sessionStorage.removeItem(KEY_NAME);
    $("nav").hidden = true;
    $("sign-out").hidden = true;
    view.hidden = true;
    view.replaceChildren();
    $("sign-in").hidden = false;
    const error = $("sign-in-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("api-key").value = "";
    $("api-key").focus();
  }

  function signedIn() {
    $("sign-in").hidden = true;
    $("nav").hidden = false;
    $("sign-out").hidden = false;
    view.hidden = false;
  }

  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_NAME, key);
    try {
      await api("/pass-types"); // a 401 brings the form back with the API's message
    } catch (error) {
      if (error.status !== 401) {
        $("sign-in-error").textContent = error.message;
        $("sign-in-error").hidden = false;
      }
      return;
    }
    $("api-key").value = "";
    $("sign-in-error").hidden = true;
    signedIn();
    if (!location.hash || location.hash === "#" || location.hash === "#/") {
      location.hash = "#/overview";
    } else {
      route();
    }
  });

  $("sign-out").addEventListener("click", () => {
    signOut("");
    announce("Signed out.");
  });

  // --- routing ---------------------------------------------------------------------------

  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, "");
    const [path, query = ""] = raw.split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    return { parts, params: new URLSearchParams(query) };
  }

  let routeCount = 0;

  async function route() {
    if (!sessionStorage.getItem(KEY_NAME)) {
      signOut("");
      return;
    }
    signedIn();
    const { parts, params } = parseHash();
    const section = parts[0] || "overview";
    for (const link of document.querySelectorAll("#nav a")) {
      if (link.dataset.section === section) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const current = ++routeCount;
    view.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    view.setAttribute("aria-busy", "true");
    let content;
    try {
      content = await render(section, parts.slice(1), params);
    } catch (error) {
      if (error.status === 401) return;
      content = [h("h1", {}, "Something went wrong"), banner("error", error.message)];
    } finally {
      view.removeAttribute("aria-busy");
    }
    if (current !== routeCount) return; // a newer navigation won
    // A view lists optional parts as `cond ? node : null`; replaceChildren would print "null".
    view.replaceChildren(...[content].flat(Infinity).filter((node) => node !== null && node !== undefined && node !== false));
    document.title = `${view.querySelector("h1")?.textContent || "passhouse"} · passhouse`;
    view.focus({ preventScroll: true });
  }

  function render(section, rest, params) {
    switch (section) {
      case "overview":
        return overview();
      case "templates":
        return rest.length ? templateDetail(rest.join("/")) : templateList();
      case "passes":
        if (rest[0] === "new") return issueForm(params.get("template"));
        if (rest.length >= 2) return passDetail(rest[0], rest.slice(1).join("/"));
        return passList(params.get("template"), params.get("q"), params.get("sort"));
      case "webhooks":
        return rest.length ? webhookDetail(rest[0]) : webhookList();
      case "jobs":
        return jobsPage(rest, params);
      case "device-logs":
        return deviceLogs();
      default:
        return [h("h1", {}, "Not found"), h("p", {}, "There is no such page. ", h("a", { href: "#/overview" }, "Go to the overview"), ".")];
    }
  }


  // --- previews ---------------------------------------------------------------------------

  // The server draws the pass (POST /previews, GET .../preview) as a standalone page; it is
  // shown in a sandboxed frame: no script of it can run, and it cannot reach this page.
  function previewFrame(preview, label, id) {
    return h("iframe", {
      class: "preview-frame",
      id: id || null,
      sandbox: "",
      title: label,
      srcdoc: preview.html,
      referrerpolicy: "no-referrer",
    });
  }

  function problemItems(items) {
    return items.map((item) =>
      h("li", { "data-path": item.path }, item.path ? [h("code", {}, item.path), " "] : null, item.message)
    );
  }

  function problems(preview, id) {
    const errors = preview.errors || [];
    const warnings = preview.warnings || [];
    return h(
      "div",
      { class: "problems", id: id || null },
      errors.length
        ? [h("h3", {}, `${errors.length} error${errors.length === 1 ? "" : "s"}`), h("ul", { class: "errors" }, problemItems(errors))]
        : h("p", { class: "pill ok" }, "No errors"),
      warnings.length ? [h("h3", {}, `${warnings.length} warning${warnings.length === 1 ? "" : "s"}`), h("ul", { class: "warnings" }, problemItems(warnings))] : null
    );
  }

  // Where each key path of a JSON text starts: {"storeCard.primaryFields[0].value": line}.
  // A small parser over text JSON.parse has already accepted.
  function keyLines(text) {
    const lines = Object.create(null);
    let i = 0;
    let line = 1;
    const skip = () => {
      while (i < text.length && /\s/.test(text[i])) {
        if (text[i] === "\n") line += 1;
        i += 1;
      }
    };
    const string = () => {
      let out = "";
      i += 1;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === "\\") {
          out += text[i + 1] === '"' ? '"' : text[i + 1];
          i += 2;
        } else {
          out += text[i];
          i += 1;
        }
      }
      i += 1;
      return out;
    };
    const value = (path) => {
      skip();
      if (!(path in lines)) lines[path] = line;
      if (text[i] === "{") {
        i += 1;
        for (;;) {
          skip();
          if (text[i] === "}") { i += 1; return; }
          if (text[i] === ",") { i += 1; continue; }
          const keyLine = line;
          const key = string();
          const child = path ? `${path}.${key}` : key;
          lines[child] = keyLine;
          skip();
          i += 1; // the colon
          value(child);
        }
      } else if (text[i] === "[") {
        i += 1;
        let index = 0;
        for (;;) {
          skip();
          if (text[i] === "]") { i += 1; return; }
          if (text[i] === ",") { i += 1; continue; }
          value(`${path}[${index}]`);
          index += 1;
        }
      } else if (text[i] === '"') {
        string();
      } else {
        while (i < text.length && !/[\s,\]}]/.test(text[i])) i += 1;
      }
    };
    value("");
    return lines;
  }

  // The line a validator message belongs to: its key's, or the nearest parent's that exists.
  function lineOf(lines, path) {
    if (!/^[A-Za-z0-9_]/.test(path) || /\.(png|strings|json)$/.test(path)) return null;
    let current = path;
    for (;;) {
      if (current in lines) return lines[current];
      const parent = current.replace(/(\.[^.[\]]+|\[\d+\])$/, "");
      if (parent === current) return lines[""] || null; // a top-level key: the object's line
      current = parent;
    }
  }

  function jsonText(value) {
    return JSON.stringify(value, null, 2);
  }

  async function fileBase64(file) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(binary);
  }

  // Width x height from a PNG's IHDR, for the file list; the server's checks say the rest.
  function pngSize(base64) {
    try {
      const head = atob(base64.slice(0, 44));
      if (head.slice(1, 4) !== "PNG") return null;
      const read = (at) => ((head.charCodeAt(at) << 24) | (head.charCodeAt(at + 1) << 16) | (head.charCodeAt(at + 2) << 8) | head.charCodeAt(at + 3)) >>> 0;
      return `${read(16)} × ${read(20)} px`;
    } catch (_) {
      return null;
    }
  }

  // --- the Google Wallet card (issues 11 and 12) -----------------------------------------

  // The server draws the Google card from the class and object it sends to Google
  // (`google` of a preview answer); shown beside the Apple preview, in the same kind of frame.
  function googleCard(google, label, id) {
    if (!google) return null;
    return h(
      "figure",
      { class: "google-card", "data-google-type": google.type },
      h("figcaption", {}, "Google Wallet"),
      h("div", { class: "preview-slot" }, previewFrame(google, label, id)),
      google.errors.length || google.warnings.length ? problems(google, id ? `${id}-problems` : null) : null
    );
  }

  // Apple's preview and, when the template is opted in, Google's card next to it.
  function previewPair(applePreview, google, appleLabel, appleId, googleId) {
    return h(
      "div",
      { class: google ? "preview-pair" : "preview-single" },
      h("figure", { class: "apple-card" }, google ? h("figcaption", {}, "Apple Wallet") : null, h("div", { class: "preview-slot" }, previewFrame(applePreview, appleLabel, appleId))),
      googleCard(google, `Google Wallet card: ${appleLabel}`, googleId)
    );
  }

  const GOOGLE_SYNC_PILLS = { synced: "ok", pending: "soon", failed: "expired" };
  const GOOGLE_STATE_PILLS = { ACTIVE: "ok", INACTIVE: "expired", EXPIRED: "expired" };

  // The pass's Google state and last sync, from the pass API's `google` and the card's state.
  function googleBlock(p, google) {
    const g = p.google;
    if (!g && !google) return null;
    const error = g && g.error;
    const link = safeHref((p.urls && p.urls.google) || (g && g.save_url));
    return h(
      "section",
      { class: "google-block card", id: "pass-google", "aria-labelledby": "pass-google-title" },
      h("h2", { id: "pass-google-title" }, "Google Wallet"),
      g
        ? definitions([
            ["Sync", h("span", { id: "google-sync", class: `pill ${GOOGLE_SYNC_PILLS[g.status] || "soon"}` }, g.status)],
            google && google.state ? ["Object state", h("span", { id: "google-state", class: `pill ${GOOGLE_STATE_PILLS[google.state] || "soon"}` }, google.state)] : null,
            ["Last sync", h("span", { id: "google-last-sync" }, g.last_sync_at ? when(g.last_sync_at) : "never")],
            ["Up to date", g.up_to_date ? `yes (version ${g.synced_version})` : `no: Google has ${g.synced_version === null ? "no version yet" : `version ${g.synced_version}`}, the pass is at ${p.version}`],
            ["Last error", error ? h("span", { id: "google-error", class: "bad" }, [error.status ?? "", error.reason ? ` ${error.reason}` : "", error.message ? `: ${error.message}` : ""].join("").trim()) : "none"],
            ["Saved by the holder", g.saved ? `yes (${g.saves} save${g.saves === 1 ? "" : "s"}, ${g.deletes} delete${g.deletes === 1 ? "" : "s"})` : `no (${g.saves} saves, ${g.deletes} deletes)`],
            ["Notifications, last 24 h", `${g.notifications_last_24h} of 3`],
            ["Object ID", h("code", { class: "break" }, g.object_id)],
          ])
        : h("p", { class: "muted" }, "The template is opted in to Google Wallet; this pass has no Google object yet."),
      link ? h("p", {}, h("a", { href: link, rel: "noopener noreferrer", target: "_blank" }, "Add to Google Wallet link")) : null
    );
  }

  // --- the template designer ---------------------------------------------------------------

  async function designer(t, files, sample) {
    const state = { files: { ...files }, timer: null, sequence: 0, lines: {} };
    const json = h("textarea", { id: "design-json", class: "code", rows: 24, spellcheck: "false", "aria-describedby": "design-json-problems", wrap: "off" }, jsonText(t.pass_json));
    const gutter = h("div", { class: "gutter", "aria-hidden": "true" });
    const jsonProblems = h("ul", { class: "errors near", id: "design-json-problems", "aria-live": "polite" });
    const data = h("textarea", { id: "design-data", class: "code", rows: 6, spellcheck: "false", "aria-describedby": "design-data-problems" }, jsonText(sample));
    const dataProblems = h("ul", { class: "errors near", id: "design-data-problems" });
    const fileBody = h("tbody");
    const frame = h("div", { class: "preview-slot", id: "design-preview" });
    const overall = h("div", { id: "design-problems" });
    const status = h("p", { class: "muted", id: "design-status", role: "status" }, "Drawing the preview…");
    const picker = h("input", { id: "design-files", type: "file", multiple: true, accept: ".png,.strings,.json" });
    const drop = h(
      "div",
      { class: "dropzone", id: "design-drop" },
      h("p", {}, "Drop images here (icon.png, logo@2x.png, strip.png…), or "),
      h("label", { for: "design-files" }, "choose files"),
      picker
    );
    const save = h("button", { type: "button", id: "design-save" }, "Save as new version");

    const renderGutter = (problemsByLine) => {
      const count = json.value.split("\n").length;
      const rows = [];
      for (let n = 1; n <= count; n += 1) {
        const found = problemsByLine[n];
        rows.push(h("span", { class: found ? "ln err" : "ln", title: found ? found.join("\n") : null, "data-line": n }, found ? `● ${n}` : String(n)));
      }
      gutter.replaceChildren(...rows);
      gutter.scrollTop = json.scrollTop;
    };
    json.addEventListener("scroll", () => { gutter.scrollTop = json.scrollTop; });

    const renderFiles = (warnings, errors) => {
      const notes = (name) => [...errors, ...warnings].filter((item) => item.path === name || item.path.startsWith(`${name} `));
      fileBody.replaceChildren(
        ...Object.keys(state.files).sort().map((name) => {
          const remove = h("button", { type: "button", class: "quiet", "aria-label": `Remove ${name}` }, "Remove");
          remove.addEventListener("click", () => {
            delete state.files[name];
            announce(`${name} removed from the draft.`);
            schedule(0);
          });
          const found = notes(name);
          return h(
            "tr",
            { "data-file": name },
            h("td", {}, h("code", {}, name)),
            h("td", {}, pngSize(state.files[name]) || "—"),
            h("td", { class: "file-check" }, found.length ? h("ul", { class: "plain" }, found.map((item) => h("li", { class: errors.includes(item) ? "bad" : "soon" }, item.message))) : h("span", { class: "pill ok" }, "ok")),
            h("td", {}, remove)
          );
        })
      );
    };

    const show = (preview) => {
      const byLine = Object.create(null);
      const near = [];
      const general = { errors: [], warnings: [] };
      const dataItems = [];
      for (const [kind, items] of [["errors", preview.errors], ["warnings", preview.warnings]]) {
        for (const item of items) {
          if (item.path === "data") { dataItems.push(item); continue; }
          if (item.path in state.files) continue; // shown next to the file
          const line = lineOf(state.lines, item.path);
          if (line && kind === "errors") {
            (byLine[line] = byLine[line] || []).push(`${item.path}: ${item.message}`);
            near.push(h("li", { "data-path": item.path, "data-line": line }, h("a", { href: `#line-${line}`, "data-line": line, class: "jump" }, `line ${line}`), " ", h("code", {}, item.path), " ", item.message));
          } else {
            general[kind].push(item);
          }
        }
      }
      renderGutter(byLine);
      jsonProblems.replaceChildren(...near);
      dataProblems.replaceChildren(...problemItems(dataItems));
      renderFiles(preview.warnings, preview.errors);
      frame.replaceChildren(previewPair(preview, preview.google, `Preview of ${t.name}`, "design-frame", "design-google-frame"));
      overall.replaceChildren(problems({ errors: general.errors, warnings: general.warnings }, "design-general"));
      status.textContent = preview.errors.length
        ? `${preview.errors.length} error${preview.errors.length === 1 ? "" : "s"}: a pass made from this draft would be refused.`
        : "No errors. The preview follows what you type.";
    };

    const draw = async () => {
      const sequence = ++state.sequence;
      let passJson;
      let sampleData;
      try {
        passJson = parseJsonObject(json.value, "pass.json");
        state.lines = keyLines(json.value);
      } catch (error) {
        status.textContent = error.message;
        jsonProblems.replaceChildren(h("li", {}, error.message));
        return;
      }
      try {
        sampleData = parseJsonObject(data.value, "Sample data");
      } catch (error) {
        status.textContent = error.message;
        dataProblems.replaceChildren(h("li", {}, error.message));
        return;
      }
      try {
        const preview = await api("/previews", { method: "POST", json: { pass_json: passJson, data: sampleData, pass_type_id: t.pass_type_id, assets: state.files, google: t.google ? t.google.config : undefined } });
        if (sequence === state.sequence) show(preview);
      } catch (error) {
        if (sequence === state.sequence) status.textContent = error.message;
      }
    };
    const schedule = (delay) => {
      clearTimeout(state.timer);
      state.timer = setTimeout(draw, delay);
    };
    json.addEventListener("input", () => schedule(350));
    data.addEventListener("input", () => schedule(350));

    const addFiles = async (list) => {
      for (const file of list) {
        if (file.size > 5 * 1024 * 1024) {
          showError(`${file.name} is larger than 5 MB: a template file may not be.`);
          continue;
        }
        state.files[file.name] = await fileBase64(file);
        announce(`${file.name} added to the draft.`);
      }
      schedule(0);
    };
    picker.addEventListener("change", () => addFiles([...picker.files]));
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      addFiles([...event.dataTransfer.files]);
    });
    jsonProblems.addEventListener("click", (event) => {
      const target = event.target.closest("a.jump");
      if (!target) return;
      event.preventDefault();
      const line = Number(target.dataset.line);
      const lines = json.value.split("\n");
      const start = lines.slice(0, line - 1).join("\n").length + (line > 1 ? 1 : 0);
      json.focus();
      json.setSelectionRange(start, start + lines[line - 1].length);
    });

    save.addEventListener("click", async () => {
      clearError();
      let passJson;
      try {
        passJson = parseJsonObject(json.value, "pass.json");
      } catch (error) {
        showError(error);
        return;
      }
      save.disabled = true;
      try {
        const impact = await api(`/templates/${encodeURIComponent(t.name)}/impact`);
        const question =
          `Save as revision ${impact.revision + 1} of ${t.name}? ` +
          `${impact.passes} pass${impact.passes === 1 ? "" : "es"} get a new version, and ` +
          `${impact.devices} device${impact.devices === 1 ? "" : "s"} holding them will be told to fetch it.`;
        if (!window.confirm(question)) {
          announce("Not saved.");
          return;
        }
        const result = await api(`/templates/${encodeURIComponent(t.name)}`, { method: "PUT", json: { pass_json: passJson, assets: state.files } });
        const message = `Saved as revision ${result.revision}: ${result.passes_changed} pass${result.passes_changed === 1 ? "" : "es"} updated.`;
        announce(message);
        showNotice(message);
        t.revision = result.revision;
        const revision = $("template-revision");
        if (revision) revision.textContent = String(result.revision);
      } catch (error) {
        showError(error);
      } finally {
        save.disabled = false;
      }
    });

    schedule(0);
    return h(
      "div",
      { class: "designer" },
      h(
        "div",
        { class: "designer-edit" },
        h("label", { for: "design-json" }, "pass.json (with {{placeholders}})"),
        h("div", { class: "editor" }, gutter, json),
        jsonProblems,
        h("label", { for: "design-data" }, "Sample data (JSON; fills the placeholders in the preview only)"),
        data,
        dataProblems,
        h("h3", {}, "Images and files"),
        drop,
        h("div", { class: "table-wrap" }, h("table", { id: "design-file-table" }, head(["File", "Size", "Check", ""]), fileBody)),
        h("p", { class: "actions" }, save)
      ),
      h("div", { class: "designer-preview" }, status, frame, overall)
    );
  }

  // --- overview --------------------------------------------------------------------------

  function certificateState(passType) {
    const notAfter = new Date(passType.certificate.not_after);
    const days = Math.floor((notAfter.getTime() - Date.now()) / 86400000);
    if (passType.expired || days < 0) return { kind: "expired", text: `expired ${notAfter.toLocaleDateString()}` };
    if (days < SOON_DAYS) return { kind: "soon", text: `expires in ${days} day${days === 1 ? "" : "s"} (${notAfter.toLocaleDateString()})` };
    return { kind: "ok", text: `valid until ${notAfter.toLocaleDateString()}` };
  }

  function statValue(key, value) {
    if (value === null || value === undefined) return "—";
    if (Array.isArray(value)) {
      if (!value.length) return "none";
      return h("ul", { class: "plain" }, value.map((item) => h("li", {}, statValue("", item))));
    }
    if (typeof value === "object") {
      const entries = Object.entries(value);
      if (!entries.length) return "none";
      return definitions(entries.map(([k, v]) => [humanize(k), statValue(k, v)]));
    }
    if (key.endsWith("_seconds") && typeof value === "number") return duration(value);
    if (key.endsWith("_at_ms") || key.endsWith("_at") || key === "at") return when(value);
    return String(value);
  }

  // Bars drawn with the DOM's SVG API: one per day, its value in a <title> for hover and
  // in a table for screen readers.
  function barChart(label, series, key) {
    const NS = "http://www.w3.org/2000/svg";
    const width = 320;
    const height = 90;
    const max = Math.max(1, ...series.map((point) => Number(point[key]) || 0));
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("class", "chart");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `${label} per day`);
    const step = width / Math.max(1, series.length);
    series.forEach((point, index) => {
      const value = Number(point[key]) || 0;
      const bar = document.createElementNS(NS, "rect");
      const barHeight = (value / max) * (height - 4);
      bar.setAttribute("x", String(index * step + 1));
      bar.setAttribute("y", String(height - barHeight));
      bar.setAttribute("width", String(Math.max(1, step - 2)));
      bar.setAttribute("height", String(barHeight));
      const title = document.createElementNS(NS, "title");
      title.textContent = `${String(point.start).slice(0, 10)}: ${value}`;
      bar.append(title);
      svg.append(bar);
    });
    const total = series.reduce((sum, point) => sum + (Number(point[key]) || 0), 0);
    return h("figure", { class: "card chart-card" }, h("figcaption", {}, `${label}: ${total}`), svg);
  }

  async function charts() {
    let stats;
    try {
      stats = await api("/stats?interval=day");
    } catch (error) {
      if (error.status === 404 || error.status === 405) {
        return [h("p", { class: "muted", id: "no-stats" }, "Charts of issued, installed, uninstalled and pushed passes per day need the stats API (GET /api/v1/stats), which this server does not have yet: nothing is drawn rather than numbers made up."), null];
      }
      throw error;
    }
    const series = stats.series || [];
    if (!series.length) return [h("p", { class: "muted", id: "no-stats" }, "No activity in this period yet."), stats.totals || null];
    return [
      h(
        "div",
        { class: "cards charts" },
        barChart("Issued", series, "issued"),
        barChart("Installed", series, "installs"),
        barChart("Uninstalled", series, "uninstalls"),
        barChart("Pushed", series, "pushes_sent")
      ),
      stats.totals || null,
    ];
  }

  async function overview() {
    const [types, stats, templates, chartParts, jobsNow] = await Promise.all([api("/pass-types"), api("/push/stats"), api("/templates"), charts(), activeJobs()]);
    const [chartNode, totals] = chartParts;
    const passCount = templates.items.reduce((sum, t) => sum + t.pass_count, 0);
    const alerts = [];
    const cards = types.items.map((passType) => {
      const cert = certificateState(passType);
      if (passType.apns_error) {
        alerts.push(
          banner(
            "error",
            h("strong", {}, `APNs rejected the certificate of ${passType.pass_type_id}: `),
            `${passType.apns_error.reason} — pushes are held until the certificate is replaced.`
          )
        );
      }
      return h(
        "article",
        { class: "card" },
        h("h3", {}, passType.pass_type_id),
        definitions([
          ["Team ID", passType.team_id],
          ["Certificate", h("span", { class: `pill ${cert.kind}` }, cert.text)],
          ["APNs auth", passType.apns_auth],
          passType.apns_error ? ["APNs error", h("span", { class: "pill expired" }, passType.apns_error.reason)] : null,
          ["Added", when(passType.created_at)],
        ]),
        passType.dev_mode
          ? banner("note", "Dev mode: passes signed with a local dev certificate will not install on a real iPhone.")
          : null
      );
    });
    return [
      h("h1", {}, "Overview"),
      ...alerts,
      h(
        "div",
        { class: "cards counts" },
        h("article", { class: "card count" }, h("p", { class: "big", id: "count-passes" }, String(passCount)), h("p", {}, "passes")),
        h("article", { class: "card count" }, h("p", { class: "big", id: "count-templates" }, String(templates.items.length)), h("p", {}, "templates")),
        h("article", { class: "card count" }, h("p", { class: "big", id: "count-installs" }, totals && totals.active_installs !== undefined ? String(totals.active_installs) : "—"), h("p", {}, "installs"))
      ),
      jobsNow,
      h("h2", {}, "Activity"),
      chartNode,
      h("h2", {}, "Pass types"),
      cards.length ? h("div", { class: "cards" }, cards) : h("p", { class: "muted" }, "No pass type yet: add one with passhouse pass-type add."),
      h("h2", {}, "Push delivery"),
      definitions(Object.entries(stats).map(([key, value]) => [humanize(key), statValue(key, value)])),
    ];
  }

  // --- templates -------------------------------------------------------------------------

  async function templateList() {
    const [list, types] = await Promise.all([api("/templates"), api("/pass-types")]);
    const rows = list.items.map((t) =>
      h(
        "tr",
        {},
        h("td", {}, h("a", { href: templateHash(t.name) }, t.name)),
        h("td", {}, t.pass_type_id),
        h("td", { class: "num" }, t.pass_count),
        h("td", { class: "num" }, t.revision)
      )
    );
    const form = h(
      "form",
      { class: "stack", id: "template-upload" },
      h("label", { for: "template-name" }, "Name"),
      h("input", { id: "template-name", name: "name", required: true, maxlength: 200, autocomplete: "off" }),
      h("label", { for: "template-pass-type" }, "Pass type"),
      h("select", { id: "template-pass-type", name: "pass_type_id", required: true }, types.items.map((t) => h("option", { value: t.pass_type_id }, t.pass_type_id))),
      h("label", { for: "template-file" }, "Template zip (pass.json, images, xx.lproj folders)"),
      h("input", { id: "template-file", name: "file", type: "file", accept: ".zip,application/zip", required: true }),
      h("button", { type: "submit" }, "Upload template")
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        const created = await api("/templates/upload", { method: "POST", form: new FormData(form) });
        announce(`Template ${created.name} created.`);
        location.hash = templateHash(created.name);
      } catch (error) {
        showFormError(form, error);
      } finally {
        button.disabled = false;
      }
    });
    const gallery = h("div", { class: "gallery", id: "template-gallery" });
    for (const t of list.items) {
      const slot = h("div", { class: "preview-slot" }, h("p", { class: "muted" }, "Drawing…"));
      gallery.append(h("figure", { class: "card preview-card" }, slot, h("figcaption", {}, t.name)));
      api("/previews", { method: "POST", json: { template: t.name, pass_json: t.pass_json, data: {} } })
        .then((preview) => slot.replaceChildren(previewFrame(preview, `Preview of ${t.name}`)))
        .catch((error) => slot.replaceChildren(h("p", { class: "muted" }, error.message)));
    }
    return [
      h("h1", {}, "Templates"),
      rows.length ? table(["Name", "Pass type", "Passes", "Revision"], rows) : h("p", { class: "muted" }, "No templates yet."),
      rows.length ? gallery : null,
      h("h2", {}, "New template from a zip"),
      types.items.length ? form : h("p", { class: "muted" }, "Add a pass type first: ", h("code", {}, "passhouse pass-type add"), "."),
    ];
  }

  async function templateDetail(ref) {
    const t = await api(`/templates/${encodeURIComponent(ref)}`);
    const [files, newest] = await Promise.all([
      api(`/templates/${encodeURIComponent(t.name)}/assets`),
      api(`/passes?${new URLSearchParams({ template: t.name, limit: "1", sort: "-created" })}`),
    ]);
    // The sample starts as the newest pass's data: real values draw a real-looking pass.
    const sample = newest.items.length ? newest.items[0].data : placeholderData(t.pass_json);
    return [
      h("p", { class: "crumbs" }, h("a", { href: "#/templates" }, "Templates"), " / "),
      h("h1", {}, t.name),
      h(
        "p",
        { class: "actions" },
        h("a", { class: "button", href: `#/passes/new?template=${encodeURIComponent(t.name)}` }, "Issue a pass"),
        h("a", { href: `#/passes?template=${encodeURIComponent(t.name)}` }, `Its ${t.pass_count} pass${t.pass_count === 1 ? "" : "es"}`),
        h("a", { href: `#/jobs/import?template=${encodeURIComponent(t.name)}` }, "Import passes from a CSV")
      ),
      definitions([
        ["ID", t.id],
        ["Pass type", t.pass_type_id],
        ["Revision", h("span", { id: "template-revision" }, t.revision)],
        ["Passes", t.pass_count],
        ["Created", when(t.created_at)],
        ["Updated", when(t.updated_at)],
      ]),
      h("h2", {}, "Designer"),
      h("p", { class: "muted" }, "Edit pass.json and the sample data: the preview follows as you type. Errors sit next to the line of the key they name. Saving makes a new revision and updates every pass made from this template."),
      await designer(t, files.assets, sample),
      h("h2", {}, "pass.json"),
      h("pre", { class: "code", tabindex: 0 }, JSON.stringify(t.pass_json, null, 2)),
    ];
  }

  // --- passes ----------------------------------------------------------------------------

  function keyData(data) {
    const leaves = [];
    const walk = (value, prefix) => {
      for (const [key, item] of Object.entries(value || {})) {
        if (item && typeof item === "object" && !Array.isArray(item)) walk(item, `${prefix}${key}.`);
        else leaves.push(`${prefix}${key}: ${typeof item === "string" ? item : JSON.stringify(item)}`);
      }
    };
    walk(data, "");
    return leaves.slice(0, 3).join(" · ") || "—";
  }

  // A pass's state as a label and a pill class: retired, voided, expired or active.
  function passState(p) {
    if (p.retired) return ["retired", "expired"];
    if (p.voided) return ["voided", "expired"];
    if (p.expired) return ["expired", "soon"];
    return ["active", "ok"];
  }

  function passRow(p) {
    const [label, kind] = passState(p);
    return h(
      "tr",
      {},
      h("td", {}, h("a", { href: passHash(p) }, p.serial_number)),
      h("td", {}, p.template),
      h("td", { class: "data-cell" }, keyData(p.data)),
      h("td", { class: "num" }, p.installs ?? "—"),
      h("td", { class: "num" }, p.version),
      h("td", {}, h("span", { class: `pill ${kind}` }, label)),
      h("td", {}, when(p.created_at))
    );
  }

  // GET /passes takes q (serial or any data value, by prefix) and sort (-created: newest
  // first, the default); the list pages with the API's cursor.
  async function passList(template, q, sort) {
    const templates = await api("/templates");
    const query = (cursor) => {
      const params = new URLSearchParams({ limit: String(PAGE_SIZE), sort: sort || "-created" });
      if (template) params.set("template", template);
      if (q) params.set("q", q);
      if (cursor) params.set("cursor", cursor);
      return `/passes?${params}`;
    };
    const first = await api(query(null));
    const body = h("tbody", {}, first.items.map(passRow));
    const more = h("button", { type: "button", class: "quiet", id: "load-more", hidden: !first.next_cursor }, "Load more");
    let cursor = first.next_cursor;
    more.addEventListener("click", async () => {
      more.disabled = true;
      clearError();
      try {
        const page = await api(query(cursor));
        body.append(...page.items.map(passRow));
        cursor = page.next_cursor;
        more.hidden = !cursor;
        announce(`${page.items.length} more passes loaded.`);
      } catch (error) {
        showError(error);
      } finally {
        more.disabled = false;
      }
    });
    const filter = h(
      "select",
      { id: "pass-filter", name: "template" },
      h("option", { value: "" }, "All templates"),
      templates.items.map((t) => h("option", { value: t.name, selected: t.name === template }, t.name))
    );
    const search = h("input", { id: "pass-search", name: "q", type: "search", value: q || "", autocomplete: "off", spellcheck: "false", placeholder: "Name, serial or any value" });
    const order = h(
      "select",
      { id: "pass-sort", name: "sort" },
      [["-created", "Newest first"], ["created", "Oldest first"], ["-updated", "Recently changed"], ["updated", "Least recently changed"]].map(([value, label]) =>
        h("option", { value, selected: value === (sort || "-created") }, label)
      )
    );
    const form = h(
      "form",
      { class: "toolbar", role: "search", id: "pass-search-form" },
      h("span", {}, h("label", { for: "pass-search" }, "Search "), search),
      h("span", {}, h("label", { for: "pass-filter" }, "Template "), filter),
      h("span", {}, h("label", { for: "pass-sort" }, "Order "), order),
      h("button", { type: "submit" }, "Search")
    );
    const go = () => {
      const params = new URLSearchParams();
      if (filter.value) params.set("template", filter.value);
      if (search.value.trim()) params.set("q", search.value.trim());
      if (order.value !== "-created") params.set("sort", order.value);
      location.hash = `#/passes${params.toString() ? `?${params}` : ""}`;
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      go();
    });
    filter.addEventListener("change", go);
    order.addEventListener("change", go);
    const issueHref = template ? `#/passes/new?template=${encodeURIComponent(template)}` : "#/passes/new";
    return [
      h("h1", {}, "Passes"),
      form,
      h("p", { class: "actions" }, h("a", { class: "button", href: issueHref }, "Issue a pass")),
      first.items.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { id: "pass-table" },
              head(["Serial", "Template", "Data", "Installs", "Version", "Status", "Issued"]),
              body
            )
          )
        : h("p", { class: "muted" }, q ? `No pass matches “${q}”.` : "No passes yet."),
      more,
    ];
  }

  function parseJsonObject(text, what) {
    let value;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new Error(`${what} is not valid JSON: ${error.message}`);
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new Error(`${what} must be a JSON object, like {"name": "Ada"}.`);
    }
    return value;
  }

  // {"name": "", "seat": {"number": ""}} for a template that uses {{name}} and {{seat.number}}:
  // dotted placeholders read nested data, so the form fills them nested.
  function placeholderData(passJson) {
    const data = Object.create(null); // no prototype: a placeholder may be named "__proto__"
    for (const match of JSON.stringify(passJson).matchAll(/\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g)) {
      const parts = match[1].split(".");
      const last = parts.pop();
      let node = data;
      for (const part of parts) {
        if (typeof node[part] !== "object" || node[part] === null) node[part] = Object.create(null);
        node = node[part];
      }
      if (!(last in node)) node[last] = "";
    }
    return data;
  }

  async function issueForm(selected) {
    const templates = await api("/templates");
    if (!templates.items.length) {
      return [h("h1", {}, "Issue a pass"), h("p", {}, "Create a template first. "), h("a", { href: "#/templates" }, "Templates")];
    }
    const select = h(
      "select",
      { id: "issue-template", name: "template", required: true },
      templates.items.map((t) => h("option", { value: t.name, selected: t.name === selected }, `${t.name} (${t.pass_type_id})`))
    );
    const data = h("textarea", { id: "issue-data", name: "data", rows: 8, spellcheck: "false", class: "code" });
    const serial = h("input", { id: "issue-serial", name: "serial_number", maxlength: 255, autocomplete: "off", spellcheck: "false" });
    const prefill = () => {
      const t = templates.items.find((item) => item.name === select.value);
      data.value = JSON.stringify(t ? placeholderData(t.pass_json) : {}, null, 2);
    };
    select.addEventListener("change", prefill);
    prefill();
    const form = h(
      "form",
      { class: "stack", id: "issue-form" },
      h("label", { for: "issue-template" }, "Template"),
      select,
      h("label", { for: "issue-data" }, "Data (JSON object; fills the template's {{placeholders}})"),
      data,
      h("label", { for: "issue-serial" }, "Serial number (optional; one is generated if empty)"),
      serial,
      h("button", { type: "submit" }, "Issue pass")
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        const body = { template: select.value, data: parseJsonObject(data.value, "Data") };
        if (serial.value.trim()) body.serial_number = serial.value.trim();
        const created = await api("/passes", { method: "POST", json: body });
        announce(`Pass ${created.serial_number} issued.`);
        location.hash = passHash(created);
      } catch (error) {
        showError(error);
      } finally {
        button.disabled = false;
      }
    });
    return [h("p", { class: "crumbs" }, h("a", { href: "#/passes" }, "Passes"), " / "), h("h1", {}, "Issue a pass"), form];
  }

  async function download(p) {
    const response = await api(`${passPath(p)}/pkpass`, { raw: true });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: `${p.serial_number}.pkpass`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // One input per placeholder, nested data as nested fieldsets; the JSON view stays.
  function dataForm(p, template, onSaved) {
    const shape = mergeShape(placeholderData(template ? template.pass_json : {}), p.data);
    const inputs = [];
    const build = (node, path) =>
      Object.entries(node).map(([key, value]) => {
        const here = [...path, key];
        const id = `field-${here.join("-").replace(/[^A-Za-z0-9_-]/g, "_")}`;
        if (value && typeof value === "object" && !Array.isArray(value)) {
          return h("fieldset", { class: "nested" }, h("legend", {}, key), build(value, here));
        }
        const kind = typeof value === "number" ? "number" : typeof value === "boolean" ? "boolean" : Array.isArray(value) ? "json" : "string";
        const input = h("input", {
          id,
          name: here.join("."),
          value: kind === "json" ? JSON.stringify(value) : value === null || value === undefined ? "" : String(value),
          inputmode: kind === "number" ? "decimal" : null,
          autocomplete: "off",
          spellcheck: "false",
        });
        inputs.push({ input, path: here, kind });
        return h("div", { class: "field" }, h("label", { for: id }, here.join(".")), input);
      });
    const fields = build(shape, []);
    const save = h("button", { type: "submit" }, "Save changes");
    const form = h("form", { class: "stack data-form", id: "pass-form" }, fields.length ? fields : h("p", { class: "muted" }, "This template has no placeholders."), save);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      const data = JSON.parse(JSON.stringify(p.data || {}));
      try {
        for (const { input, path, kind } of inputs) {
          let value = input.value;
          if (kind === "number") {
            if (value.trim() === "" || !Number.isFinite(Number(value))) throw new Error(`${path.join(".")} must be a number.`);
            value = Number(value);
          } else if (kind === "boolean") value = value === "true";
          else if (kind === "json") value = JSON.parse(value);
          let node = data;
          for (const part of path.slice(0, -1)) {
            if (!node[part] || typeof node[part] !== "object") node[part] = {};
            node = node[part];
          }
          node[path[path.length - 1]] = value;
        }
      } catch (error) {
        showError(error);
        return;
      }
      save.disabled = true;
      try {
        await onSaved(data);
      } finally {
        save.disabled = false;
      }
    });
    return form;
  }

  function mergeShape(shape, data) {
    const out = Object.create(null);
    for (const [key, value] of Object.entries(shape)) out[key] = value;
    for (const [key, value] of Object.entries(data || {})) {
      out[key] = value && typeof value === "object" && !Array.isArray(value) && out[key] && typeof out[key] === "object" ? mergeShape(out[key], value) : value;
    }
    return out;
  }

  async function passDetail(passTypeId, serial) {
    const p = await api(passPath({ pass_type_id: passTypeId, serial_number: serial }));
    const [registrations, pushes, preview, template] = await Promise.all([
      api(`${passPath(p)}/registrations`),
      api(`${passPath(p)}/pushes`),
      api(`${passPath(p)}/preview`),
      api(`/templates/${encodeURIComponent(p.template)}`).catch(() => null),
    ]);

    const data = h("textarea", { id: "pass-data", rows: 8, spellcheck: "false", class: "code" }, JSON.stringify(p.data, null, 2));
    const save = h("button", { type: "submit" }, "Save data");
    const editor = h(
      "form",
      { class: "stack", id: "pass-edit" },
      h("label", { for: "pass-data" }, "Data (JSON; saving replaces the pass's data with exactly this)"),
      data,
      save
    );
    const saveData = async (newData) => {
      const result = await api(passPath(p), { method: "PUT", json: { data: newData } });
      const message = result.changed
        ? `Saved as version ${result.version}. Devices holding the pass will fetch it.`
        : "No change: the pass already holds this data.";
      announce(message);
      await route();
      showNotice(message);
    };
    editor.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      save.disabled = true;
      try {
        await saveData(parseJsonObject(data.value, "Data"));
      } catch (error) {
        showError(error);
        save.disabled = false;
      }
    });
    const form = dataForm(p, template, async (newData) => {
      try {
        await saveData(newData);
      } catch (error) {
        showError(error);
      }
    });

    const downloadButton = h("button", { type: "button", class: "quiet", id: "download" }, "Download .pkpass");
    downloadButton.addEventListener("click", async () => {
      clearError();
      try {
        await download(p);
      } catch (error) {
        showError(error);
      }
    });
    const voidButton = h("button", { type: "button", class: "danger", id: "void", disabled: p.voided }, p.voided ? "Voided" : "Void pass");
    voidButton.addEventListener("click", async () => {
      if (!window.confirm(`Void pass ${p.serial_number}? It stays in Wallet marked void and can no longer change.`)) return;
      clearError();
      voidButton.disabled = true;
      try {
        await api(`${passPath(p)}/void`, { method: "POST" });
        announce(`Pass ${p.serial_number} voided.`);
        await route();
      } catch (error) {
        showError(error);
        voidButton.disabled = false;
      }
    });

    const share = safeHref(p.urls.share);
    const registrationRows = registrations.items.map((r) =>
      h("tr", {}, h("td", {}, h("code", {}, shorten(r.device_library_id))), h("td", {}, r.app + (r.push_service ? ` (${r.push_service})` : "")), h("td", {}, h("code", {}, shorten(r.push_token))), h("td", {}, when(r.registered_at)))
    );
    const pushRows = pushes.items.map((a) =>
      h(
        "tr",
        {},
        h("td", {}, when(a.at)),
        h("td", {}, h("span", { class: `pill ${a.outcome === "delivered" ? "ok" : a.outcome === "retry" ? "soon" : "expired"}` }, a.outcome)),
        h("td", { class: "num" }, a.status ?? "—"),
        h("td", {}, a.reason || "—"),
        h("td", { class: "num" }, a.latency_ms ?? "—"),
        h("td", {}, h("code", {}, a.push_token))
      )
    );
    return [
      h("p", { class: "crumbs" }, h("a", { href: "#/passes" }, "Passes"), " / "),
      h("h1", {}, p.serial_number),
      p.retired
        ? banner("warning", "This pass is retired: devices that ask for it get a void copy that stops Wallet asking again, and nothing is pushed for it.")
        : p.voided
          ? banner("warning", "This pass is void: Wallet shows it as such and it can no longer change.")
          : null,
      !p.voided && p.expired ? banner("warning", `This pass expired on ${p.expires_at}: Wallet shows it as expired. A change of its data can renew it.`) : null,
      h("p", { class: "actions" }, downloadButton, share ? h("a", { href: share, rel: "noopener noreferrer", target: "_blank" }, "Share page") : null, voidButton),
      definitions([
        ["Pass type", p.pass_type_id],
        ["Template", h("a", { href: templateHash(p.template) }, p.template)],
        ["Version", h("span", { id: "pass-version" }, p.version)],
        ["Status", h("span", { id: "pass-status", class: `pill ${passState(p)[1]}` }, passState(p)[0])],
        ["Expires", p.expires_at ? when(p.expires_at) : "never"],
        ["Personalized", p.personalized ? "yes" : "no"],
        ["Created", when(p.created_at)],
        ["Modified", when(p.modified_at)],
        share ? ["Share link", h("a", { href: share, class: "break" }, share)] : null,
      ]),
      h("h2", {}, "Preview"),
      h("div", { class: "pass-preview" }, previewPair(preview, preview.google, `Preview of pass ${p.serial_number}`, "pass-frame", "pass-google-frame"), problems(preview, "pass-problems")),
      googleBlock(p, preview.google),
      h("h2", {}, "Data"),
      p.voided
        ? h("pre", { class: "code", id: "pass-data", tabindex: 0 }, JSON.stringify(p.data, null, 2))
        : [form, h("details", { class: "json-view", open: true }, h("summary", {}, "JSON view"), editor)],
      h("h2", {}, "Version history"),
      versionHistory(p),
      h("h2", {}, "Devices"),
      registrationRows.length ? table(["Device", "App", "Push token", "Registered"], registrationRows) : h("p", { class: "muted" }, "No device has registered this pass yet."),
      h("h2", {}, "Recent pushes"),
      pushRows.length ? table(["At", "Outcome", "HTTP status", "Reason", "Latency (ms)", "Token"], pushRows) : h("p", { class: "muted" }, "No pushes yet."),
    ];
  }

  // --- pass version history (GET .../versions, ADR 0029) ---------------------------------

  const CAUSES = {
    issued: "Issued",
    data_changed: "Data changed",
    voided: "Voided",
    personalized: "Personalized",
    template_changed: "Template changed",
    certificate_renewed: "Certificate renewed",
    republished: "Republished",
    batch_issued: "Issued in a batch",
    csv_import: "CSV import",
    bulk_update: "Bulk update",
    scheduled_change: "Scheduled change",
    expired: "Expired",
    retired: "Retired",
  };

  function historyValue(value) {
    return h("code", { class: "break" }, JSON.stringify(value));
  }

  // What a version changed, in words: "balance 10 → 20", "name added", "template card r3".
  function versionChanges(changes) {
    const parts = [];
    for (const entry of changes.data || []) {
      const had = Object.prototype.hasOwnProperty.call(entry, "old");
      const has = Object.prototype.hasOwnProperty.call(entry, "new");
      parts.push(
        h(
          "li",
          {},
          h("span", { class: "history-key" }, entry.key),
          " ",
          had && has ? [historyValue(entry.old), " → ", historyValue(entry.new)] : has ? ["set to ", historyValue(entry.new)] : ["removed (was ", historyValue(entry.old), ")"],
          entry.truncated ? " (cut short)" : null
        )
      );
    }
    if (changes.more_keys) parts.push(h("li", { class: "muted" }, `and ${changes.more_keys} more keys`));
    if (changes.template) parts.push(h("li", {}, "template ", h("a", { href: templateHash(changes.template.name) }, changes.template.name), ` revision ${changes.template.revision}`));
    if (changes.voided) parts.push(h("li", {}, "voided"));
    if (changes.retired) parts.push(h("li", {}, "retired: devices stop asking for it"));
    if (changes.personalization) parts.push(h("li", {}, `holder entered ${changes.personalization.join(", ")}`));
    return parts.length ? h("ul", { class: "history-changes" }, parts) : "—";
  }

  function versionRow(v) {
    return h(
      "tr",
      {},
      h("td", { class: "num" }, String(v.version)),
      h("td", {}, when(v.at)),
      h("td", {}, CAUSES[v.cause] || v.cause),
      h("td", {}, versionChanges(v.changes || {})),
      h("td", {}, v.by)
    );
  }

  // The pass page's history section: filled in when its first page arrives, with a button
  // for older pages (keyset pages, newest first).
  function versionHistory(p) {
    const section = h("div", { id: "pass-history", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading the version history…"));
    const body = h("tbody", {});
    const more = h("button", { type: "button", class: "quiet", id: "history-more" }, "Older versions");
    let cursor = null;
    const load = async () => {
      const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (cursor) query.set("cursor", cursor);
      const page = await api(`${passPath(p)}/versions?${query}`);
      body.append(...page.items.map(versionRow));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      return page;
    };
    more.addEventListener("click", async () => {
      more.disabled = true;
      try {
        await load();
      } catch (error) {
        showError(error);
      } finally {
        more.disabled = false;
      }
    });
    load().then(
      (page) => {
        const note = h("p", { class: "muted" }, `The newest ${page.kept} versions of each pass are kept.`);
        const shown = body.children.length
          ? [
              h(
                "div",
                { class: "table-wrap" },
                h("table", { id: "history-table" }, h("caption", {}, `Versions of ${p.serial_number}, newest first`), head(["Version", "When", "Cause", "What changed", "By"]), body)
              ),
              more,
            ]
          : [h("p", { class: "muted" }, `Version ${p.version}: no change was recorded for this pass (it was issued before this server kept a history).`)];
        section.replaceChildren(...shown, note);
        section.removeAttribute("aria-busy");
      },
      (error) => {
        section.replaceChildren(banner("error", `The version history could not be loaded: ${error.message}`));
        section.removeAttribute("aria-busy");
      }
    );
    return section;
  }

  function showNotice(message) {
    const node = banner("note transient-note", message);
    view.querySelector("h1")?.after(node);
    node.scrollIntoView({ block: "nearest" }); // the button that caused it may be far below
  }

  // --- webhooks --------------------------------------------------------------------------

  // The secret of a webhook just added, shown once on its page (the API never shows it again).
  let createdSecret = null;

  function webhookState(w) {
    if (!w.enabled) return h("span", { class: "pill expired" }, w.disabled_reason ? "disabled automatically" : "disabled");
    if (w.failing_since) return h("span", { class: "pill soon" }, "failing since ", when(w.failing_since));
    return h("span", { class: "pill ok" }, "enabled");
  }

  async function webhookList() {
    const list = await api("/webhooks");
    const rows = list.items.map((w) =>
      h(
        "tr",
        {},
        h("td", { class: "break" }, h("a", { href: `#/webhooks/${w.id}` }, w.url)),
        h("td", {}, w.events.join(", ")),
        h("td", {}, webhookState(w)),
        h("td", { class: "num" }, String(w.deliveries.pending)),
        h("td", { class: "num" }, String(w.deliveries.delivered)),
        h("td", { class: "num" }, String(w.deliveries.failed))
      )
    );
    const alerts = list.items
      .filter((w) => !w.enabled && w.disabled_reason)
      .map((w) => banner("error", h("strong", {}, `${w.url}: `), w.disabled_reason));
    const url = h("input", { id: "webhook-url", name: "url", type: "url", required: true, placeholder: "https://hooks.example.com/passhouse" });
    const events = h("input", { id: "webhook-events", name: "events", value: "*", required: true });
    const form = h(
      "form",
      { id: "webhook-form", class: "actions" },
      h("label", { for: "webhook-url" }, "URL"),
      url,
      h("label", { for: "webhook-events" }, "Events (comma-separated, * for all)"),
      events,
      h("button", { type: "submit" }, "Add webhook")
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      try {
        const types = events.value.split(",").map((t) => t.trim()).filter(Boolean);
        const created = await api("/webhooks", { method: "POST", json: { url: url.value, events: types } });
        createdSecret = { id: String(created.id), secret: created.secret };
        location.hash = `#/webhooks/${created.id}`;
      } catch (error) {
        showError(error);
      }
    });
    return [
      h("h1", {}, "Webhooks"),
      ...alerts,
      h("p", { class: "muted" }, "Endpoints told of pass changes, installs and push failures by signed POSTs."),
      rows.length
        ? table(["URL", "Events", "State", "Pending", "Delivered", "Failed"], rows)
        : h("p", { class: "muted" }, "No webhook yet."),
      h("h2", {}, "Add a webhook"),
      form,
    ];
  }

  async function webhookDetail(id) {
    const [w, deliveries] = await Promise.all([api(`/webhooks/${encodeURIComponent(id)}`), api(`/webhooks/${encodeURIComponent(id)}/deliveries?limit=${PAGE_SIZE}`)]);
    const rows = deliveries.items.map((d) =>
      h(
        "tr",
        {},
        h("td", {}, when(d.created_at)),
        h("td", {}, d.event),
        h("td", {}, h("span", { class: `pill ${d.state === "delivered" ? "ok" : d.state === "failed" ? "expired" : "soon"}` }, d.state)),
        h("td", { class: "num" }, String(d.attempts)),
        h("td", { class: "num" }, d.last_status === null ? "—" : String(d.last_status)),
        h("td", { class: "break" }, d.last_error || "—"),
        h("td", {}, when(d.last_attempt_at)),
        h("td", { class: "break" }, d.event_id)
      )
    );
    const act = (label, action) =>
      h("button", {
        type: "button",
        class: "quiet",
        onclick: async () => {
          clearError();
          try {
            const message = await action();
            await route();
            if (message) showNotice(message);
          } catch (error) {
            showError(error);
          }
        },
      }, label);
    const path = `/webhooks/${encodeURIComponent(id)}`;
    const secret = createdSecret && createdSecret.id === String(w.id) ? createdSecret.secret : null;
    createdSecret = null;
    return [
      h("p", { class: "crumbs" }, h("a", { href: "#/webhooks" }, "Webhooks"), " / ", String(w.id)),
      h("h1", { class: "break" }, w.url),
      secret ? banner("note", "Signing secret, shown only now: ", h("code", {}, secret)) : null,
      !w.enabled && w.disabled_reason ? banner("error", w.disabled_reason) : null,
      definitions([
        ["State", webhookState(w)],
        ["Events", w.events.join(", ")],
        ["Deliveries", `${w.deliveries.pending} pending, ${w.deliveries.delivered} delivered, ${w.deliveries.failed} failed`],
        ["Added", when(w.created_at)],
      ]),
      h(
        "div",
        { class: "actions" },
        w.enabled ? act("Send a ping", async () => { await api(`${path}/ping`, { method: "POST" }); return "Ping queued: it shows below once a worker sends it."; }) : null,
        act(w.enabled ? "Disable" : "Enable", async () => { await api(path, { method: "PATCH", json: { enabled: !w.enabled } }); return null; }),
        act("Delete", async () => {
          if (!window.confirm(`Delete the webhook ${w.url}?`)) return null;
          await api(path, { method: "DELETE" });
          location.hash = "#/webhooks";
          return null;
        })
      ),
      h("h2", {}, "Recent deliveries"),
      rows.length
        ? table(["Created", "Event", "State", "Attempts", "HTTP status", "Last error", "Last attempt", "Event ID"], rows)
        : h("p", { class: "muted" }, "No deliveries yet."),
    ];
  }

  // --- jobs (issue 9: CSV imports and bulk updates) ---------------------------------------

  const JOB_POLL_MS = 1000;
  const JOB_KINDS = { import: "CSV import", bulk_update: "Bulk update" };
  const JOB_PILLS = { queued: "soon", running: "note", done: "ok", failed: "expired" };
  const jobActive = (job) => job.status === "queued" || job.status === "running";
  NUMERIC.add("Row");

  function jobsPage(rest, params) {
    if (rest[0] === "import") return importForm(params.get("template"));
    if (rest[0] === "bulk-update") return bulkUpdateForm(params.get("template"));
    if (rest.length) return jobDetail(rest[0]);
    return jobList();
  }

  function jobStatus(job) {
    return h("span", { class: `pill ${JOB_PILLS[job.status] || "soon"}`, "data-status": job.status }, job.status);
  }

  // A native <progress>: screen readers say its value; the text beside it says it to everyone.
  function jobProgress(job, label) {
    const total = Math.max(0, Number(job.total) || 0);
    const done = Math.min(total, Math.max(0, Number(job.done) || 0));
    return h(
      "span",
      { class: "job-progress" },
      h("progress", { max: total || 1, value: total ? done : 0, "aria-label": label }),
      h("span", { class: "job-count" }, `${done} / ${total}`)
    );
  }

  function jobRow(job) {
    return h(
      "tr",
      { "data-job": job.id },
      h("td", {}, h("a", { href: `#/jobs/${job.id}` }, `Job ${job.id}`)),
      h("td", {}, JOB_KINDS[job.kind] || job.kind),
      h("td", {}, job.template),
      h("td", {}, jobStatus(job)),
      h("td", {}, jobProgress(job, `Progress of job ${job.id}`)),
      h("td", { class: "num" }, String(job.failed)),
      h("td", {}, when(job.created_at)),
      h("td", {}, when(job.finished_at))
    );
  }

  function jobActions() {
    return h(
      "p",
      { class: "actions" },
      h("a", { class: "button", href: "#/jobs/import" }, "Import a CSV"),
      h("a", { class: "button", href: "#/jobs/bulk-update" }, "Bulk update")
    );
  }

  async function jobList() {
    const first = await api(`/jobs?limit=${PAGE_SIZE}`);
    const body = h("tbody", {}, first.items.map(jobRow));
    let cursor = first.next_cursor;
    const more = h("button", { type: "button", class: "quiet", id: "more-jobs", hidden: !cursor }, "Load older jobs");
    more.addEventListener("click", async () => {
      more.disabled = true;
      clearError();
      try {
        const page = await api(`/jobs?limit=${PAGE_SIZE}&cursor=${encodeURIComponent(cursor)}`);
        body.append(...page.items.map(jobRow));
        cursor = page.next_cursor;
        more.hidden = !cursor;
        announce(`${page.items.length} older jobs loaded.`);
      } catch (error) {
        showError(error);
      } finally {
        more.disabled = false;
      }
    });
    return [
      h("h1", {}, "Jobs"),
      h("p", { class: "muted" }, "CSV imports and bulk updates, newest first. The workers run each one in chunks; a job's page follows it live."),
      jobActions(),
      first.items.length
        ? h("div", { class: "table-wrap" }, h("table", { id: "job-table" }, head(["Job", "Kind", "Template", "Status", "Progress", "Failed", "Created", "Finished"]), body))
        : h("p", { class: "muted" }, "No jobs yet."),
      more,
    ];
  }

  function jobErrorRow(job, error) {
    return h(
      "tr",
      {},
      job.kind === "import" ? h("td", { class: "num" }, error.row === null ? "—" : String(error.row)) : null,
      h("td", {}, error.serial_number ? h("code", {}, error.serial_number) : "—"),
      h("td", { class: "message" }, error.message)
    );
  }

  // The failed rows, a page at a time (GET /jobs/{id}/errors); load() starts again from
  // the first page, as the poll does when more rows failed.
  function jobErrors(job) {
    const path = `/jobs/${encodeURIComponent(job.id)}/errors`;
    const body = h("tbody");
    const empty = h("p", { class: "muted", id: "job-no-errors" }, job.kind === "import" ? "No row has failed." : "No pass has failed.");
    const wrap = h(
      "div",
      { class: "table-wrap", id: "job-errors", hidden: true },
      h("table", {}, head(job.kind === "import" ? ["Row", "Serial", "Reason"] : ["Serial", "Reason"]), body)
    );
    const more = h("button", { type: "button", class: "quiet", id: "more-job-errors", hidden: true }, "More failed rows");
    let cursor = null;
    const page = async (fresh) => {
      const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (!fresh && cursor) params.set("cursor", cursor);
      const found = await api(`${path}?${params}`);
      if (fresh) body.replaceChildren();
      body.append(...found.items.map((error) => jobErrorRow(job, error)));
      cursor = found.next_cursor;
      more.hidden = !cursor;
      wrap.hidden = !body.children.length;
      empty.hidden = !wrap.hidden;
    };
    more.addEventListener("click", async () => {
      more.disabled = true;
      clearError();
      try {
        await page(false);
      } catch (error) {
        showError(error);
      } finally {
        more.disabled = false;
      }
    });
    return { nodes: [empty, wrap, more], load: () => page(true) };
  }

  function jobFacts(job) {
    return definitions([
      ["Kind", JOB_KINDS[job.kind] || job.kind],
      ["Template", h("a", { href: templateHash(job.template) }, job.template)],
      job.mode ? ["Mode", job.mode] : null,
      ["Status", jobStatus(job)],
      ["Progress", jobProgress(job, `Progress of job ${job.id}`)],
      ["Created passes", String(job.created)],
      ["Updated passes", String(job.updated)],
      ["Unchanged", String(job.unchanged)],
      ["Failed", h("span", { id: "job-failed" }, String(job.failed))],
      ["Queued", when(job.created_at)],
      ["Started", when(job.started_at)],
      ["Finished", when(job.finished_at)],
    ]);
  }

  async function jobDetail(id) {
    let job = await api(`/jobs/${encodeURIComponent(id)}`);
    const facts = h("div", { id: "job-facts" }, jobFacts(job));
    const failure = h("div", { id: "job-failure" });
    const errors = jobErrors(job);
    await errors.load();
    const showFailure = () => failure.replaceChildren(job.status === "failed" && job.error ? banner("error", `The job stopped: ${job.error}`) : []);
    showFailure();
    const shown = routeCount;
    // Poll while the job can still move, and only while its page is the one shown.
    const poll = async () => {
      if (shown !== routeCount || !facts.isConnected) return;
      let next;
      try {
        next = await api(`/jobs/${encodeURIComponent(id)}`);
      } catch (error) {
        if (shown === routeCount && error.status !== 401) showError(error);
        if (shown === routeCount && error.status !== 401 && error.status !== 404) setTimeout(poll, JOB_POLL_MS * 5);
        return;
      }
      if (shown !== routeCount) return;
      clearError();
      const failedMore = next.failed !== job.failed;
      const finished = jobActive(job) && !jobActive(next);
      job = next;
      facts.replaceChildren(jobFacts(job));
      showFailure();
      if (failedMore || finished) await errors.load().catch(showError);
      if (finished) {
        announce(`Job ${job.id} ${job.status}: ${job.done} of ${job.total} done, ${job.failed} failed.`);
      } else {
        setTimeout(poll, JOB_POLL_MS);
      }
    };
    if (jobActive(job)) setTimeout(poll, JOB_POLL_MS);
    return [
      h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / "),
      h("h1", {}, `Job ${job.id}`),
      failure,
      facts,
      h("h2", {}, job.kind === "import" ? "Failed rows" : "Failed passes"),
      errors.nodes,
      h("h2", {}, "Another job"),
      jobActions(),
    ];
  }

  function templatePicker(id, templates, selected) {
    return h(
      "select",
      { id, name: "template", required: true },
      templates.items.map((t) => h("option", { value: t.name, selected: t.name === selected }, `${t.name} (${t.pass_type_id})`))
    );
  }

  function noTemplates(title) {
    return [h("h1", {}, title), h("p", {}, "Create a template first: ", h("a", { href: "#/templates" }, "Templates"), ".")];
  }

  async function importForm(selected) {
    const templates = await api("/templates");
    if (!templates.items.length) return noTemplates("Import passes from a CSV");
    const mode = h(
      "select",
      { id: "import-mode", name: "mode" },
      h("option", { value: "create" }, "create: a row whose serial exists fails"),
      h("option", { value: "upsert" }, "upsert: such a row changes the existing pass")
    );
    const form = h(
      "form",
      { class: "stack", id: "import-form" },
      h("label", { for: "import-template" }, "Template"),
      templatePicker("import-template", templates, selected),
      h("label", { for: "import-file" }, "CSV file (UTF-8, a header row)"),
      h("input", { id: "import-file", name: "file", type: "file", accept: ".csv,text/csv", required: true, "aria-describedby": "import-help" }),
      h(
        "p",
        { class: "muted", id: "import-help" },
        "One pass per row. A column named serial_number sets the serial; the others fill the template's placeholders, and dotted names nest (member.name). An empty cell sets nothing."
      ),
      h("label", { for: "import-mode" }, "Mode"),
      mode,
      h("button", { type: "submit" }, "Start import")
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        const job = await api("/imports", { method: "POST", form: new FormData(form) });
        announce(`Import queued as job ${job.id}.`);
        location.hash = `#/jobs/${job.id}`;
      } catch (error) {
        showFormError(form, error);
      } finally {
        button.disabled = false;
      }
    });
    return [h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / "), h("h1", {}, "Import passes from a CSV"), form];
  }

  async function bulkUpdateForm(selected) {
    const templates = await api("/templates");
    if (!templates.items.length) return noTemplates("Bulk update");
    const picker = templatePicker("bulk-template", templates, selected);
    const where = h("textarea", { id: "bulk-where", name: "where", rows: 4, spellcheck: "false", class: "code", "aria-describedby": "bulk-where-help" }, "{}");
    const data = h("textarea", { id: "bulk-data", name: "data", rows: 6, spellcheck: "false", class: "code", "aria-describedby": "bulk-data-help" }, '{\n  "offer": ""\n}');
    const form = h(
      "form",
      { class: "stack", id: "bulk-form" },
      h("label", { for: "bulk-template" }, "Template"),
      picker,
      h("label", { for: "bulk-where" }, "Where (JSON)"),
      where,
      h("p", { class: "muted", id: "bulk-where-help" }, 'Data values a pass must have, by dotted key: {"member.tier": "gold"}. {} changes every pass of the template that is not voided.'),
      h("label", { for: "bulk-data" }, "Data (JSON merge patch)"),
      data,
      h("p", { class: "muted", id: "bulk-data-help" }, "Merged into each matching pass's data; null removes a key. Each pass it changes gets a new version and its devices a push."),
      h("button", { type: "submit" }, "Start bulk update")
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      let body;
      try {
        body = { template: picker.value, where: parseJsonObject(where.value, "Where"), data: parseJsonObject(data.value, "Data") };
      } catch (error) {
        showFormError(form, error);
        return;
      }
      const t = templates.items.find((item) => item.name === picker.value);
      const count = t ? `${t.pass_count} pass${t.pass_count === 1 ? "" : "es"}` : "the passes";
      if (!window.confirm(`Apply this patch to the passes of ${picker.value} that match (of its ${count})? Devices holding a changed pass will be told to fetch it.`)) {
        announce("Not started.");
        return;
      }
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        const job = await api("/passes/bulk-update", { method: "POST", json: body });
        announce(`Bulk update queued as job ${job.id}.`);
        location.hash = `#/jobs/${job.id}`;
      } catch (error) {
        showFormError(form, error);
      } finally {
        button.disabled = false;
      }
    });
    return [h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / "), h("h1", {}, "Bulk update"), form];
  }

  // The overview's jobs: the ones queued or running now (the newest page is enough: jobs
  // run oldest first, and a long queue shows as many as a page holds).
  async function activeJobs() {
    const recent = await api(`/jobs?limit=${PAGE_SIZE}`);
    const active = recent.items.filter(jobActive);
    return [
      h("h2", {}, "Jobs"),
      active.length
        ? h("div", { class: "table-wrap" }, h("table", { id: "active-jobs" }, head(["Job", "Kind", "Template", "Status", "Progress", "Failed", "Created", "Finished"]), h("tbody", {}, active.map(jobRow))))
        : h("p", { class: "muted", id: "no-active-jobs" }, "No import or bulk update is running. ", h("a", { href: "#/jobs" }, "All jobs"), "."),
    ];
  }

  // --- device logs -----------------------------------------------------------------------

  async function deviceLogs() {
    const first = await api(`/device-logs?limit=${PAGE_SIZE}`);
    const row = (entry) => h("tr", {}, h("td", {}, when(entry.at)), h("td", {}, entry.remote_addr || "—"), h("td", { class: "message" }, entry.message));
    const body = h("tbody", {}, first.items.map(row));
    let oldest = first.items.length ? first.items[first.items.length - 1].id : null;
    const more = h("button", { type: "button", class: "quiet", hidden: first.items.length < PAGE_SIZE }, "Load older");
    more.addEventListener("click", async () => {
      more.disabled = true;
      clearError();
      try {
        const page = await api(`/device-logs?limit=${PAGE_SIZE}&before=${oldest}`);
        body.append(...page.items.map(row));
        if (page.items.length) oldest = page.items[page.items.length - 1].id;
        more.hidden = page.items.length < PAGE_SIZE;
      } catch (error) {
        showError(error);
      } finally {
        more.disabled = false;
      }
    });
    return [
      h("h1", {}, "Device logs"),
      h("p", { class: "muted" }, "What devices posted to the PassKit log endpoint, newest first."),
      first.items.length
        ? h("div", { class: "table-wrap" }, h("table", {}, head(["At", "From", "Message"]), body))
        : h("p", { class: "muted" }, "No device has logged anything."),
      more,
    ];
  }

  // --- start -----------------------------------------------------------------------------

  window.addEventListener("hashchange", route);
  if (sessionStorage.getItem(KEY_NAME)) route();
  else signOut("");
})();
