// The preview page: a recipient picker, the message as a client shows it, and live reload.
//
// Everything the server sends is placed with textContent, never innerHTML: recipient
// names and template output are data, not markup. The email itself is only ever shown
// inside the sandboxed iframe, from a URL whose Content-Security-Policy forbids scripts.
"use strict";

(() => {
  const POLL_MS = 800;
  const SEARCH_DELAY_MS = 120;

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const state = {
    email: params.get("email") || "",
    version: null,
    query: "",
    tab: "html",
    width: "desktop",
    remote: false, // remote images, styles and fonts in the email: off until asked for
    frameUrl: null,
    previous: null,
    next: null,
    messageSeq: 0,
    searchSeq: 0,
    searchTimer: null,
    live: null,
  };

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      throw new Error(`HTTP ${response.status}`);
    }
    return body;
  }

  function setText(element, value) {
    element.textContent = value == null ? "" : String(value);
  }

  function el(tag, className, content) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (content != null) element.textContent = content;
    return element;
  }

  function mailbox(box) {
    return box.name ? `${box.name} <${box.address}>` : box.address;
  }

  function kilobytes(bytes) {
    return `${(bytes / 1024).toFixed(1)} KB`;
  }

  function clock() {
    return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  // -- live status --------------------------------------------------------------------

  function setLive(kind, message) {
    if (state.live === kind + message) return;
    state.live = kind + message;
    $("live").dataset.state = kind;
    setText($("live-text"), message);
  }

  // -- the message --------------------------------------------------------------------

  async function loadMessage() {
    const seq = ++state.messageSeq;
    const query = state.email ? `?email=${encodeURIComponent(state.email)}` : "";
    const data = await getJSON(`/api/message${query}`);
    if (seq !== state.messageSeq) return; // a newer request was made meanwhile
    showMessage(data);
  }

  function showMessage(data) {
    state.version = data.version;
    const campaign = data.campaign || {};
    if (campaign.id) setText($("campaign"), campaign.id); // kept while the announcement cannot load
    setText($("recipient-count"), campaign.recipients ? `· ${campaign.recipients.toLocaleString()}` : "");
    showRecipient(data);
    showError(data.error);
    if (!data.message) setDownload(null);
    if (data.message) {
      showEnvelope(data.message, data.recipient);
      showBodies(data.message, data.recipient);
      showStats(data.message.stats);
      $("stale").hidden = true;
      $("pane-html").classList.remove("is-stale");
    } else if (data.error) {
      const hadContent = Boolean(state.frameUrl);
      $("stale").hidden = !hadContent;
      $("pane-html").classList.toggle("is-stale", hadContent);
    }
    showChecks(data.checks, data.scan_note, data.error);
  }

  function showRecipient(data) {
    const recipient = data.recipient;
    state.previous = data.previous;
    state.next = data.next;
    $("prev").disabled = !data.previous;
    $("next").disabled = !data.next;
    const total = data.campaign ? data.campaign.recipients : 0;
    setText($("position"), recipient ? `${(recipient.position + 1).toLocaleString()} of ${total.toLocaleString()}` : "–");
    if (!recipient) return;
    state.email = recipient.email;
    const url = new URL(location.href);
    url.searchParams.set("email", recipient.email);
    history.replaceState(null, "", url);
    for (const item of $("recipients").children) {
      const selected = item.dataset.email === recipient.email;
      item.setAttribute("aria-selected", String(selected));
      if (selected && document.activeElement !== $("search")) item.scrollIntoView({ block: "nearest" });
    }
  }

  function showEnvelope(message, recipient) {
    const headers = message.headers;
    setText($("subject"), message.subject);
    document.title = `${message.subject} · newsletter preview`;
    const from = message.from[0] || { name: "", address: headers.From || "" };
    setText($("from-name"), from.name || from.address);
    setText($("from-address"), from.name ? `<${from.address}>` : "");
    const initials = (from.name || from.address)
      .split(/[\s@.]+/)
      .filter(Boolean)
      .slice(0, 2)
      .map((word) => word[0].toUpperCase())
      .join("");
    setText($("avatar"), initials);
    const date = headers.Date ? new Date(headers.Date) : null;
    setText($("date"), date && !isNaN(date) ? date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "");
    setText($("h-to"), message.to.map(mailbox).join(", ") || headers.To);
    setHeader($("h-reply-to"), headers["Reply-To"], "none: replies go to the sender");
    let unsubscribe = headers["List-Unsubscribe"];
    if (unsubscribe && headers["List-Unsubscribe-Post"]) unsubscribe += "  (one-click)";
    setHeader($("h-list-unsubscribe"), unsubscribe, "missing", true);
    setHeader($("h-list-id"), headers["List-Id"], "none");
    setDownload(recipient.email);
    setText($("sizes"), `HTML ${kilobytes(message.html_bytes)} · message ${kilobytes(message.message_bytes)}`);
  }

  // The .eml of the message shown, or nothing at all: a link with no message behind it
  // would save the page itself (as download.html).
  function setDownload(email) {
    const download = $("download");
    if (email) {
      download.href = `/message.eml?email=${encodeURIComponent(email)}`;
      download.setAttribute("download", `${email}.eml`);
      download.removeAttribute("aria-disabled");
      download.title = "The message as it will be sent, to open in a mail client";
    } else {
      download.removeAttribute("href");
      download.removeAttribute("download");
      download.setAttribute("aria-disabled", "true");
      download.title = "The message can be downloaded once it renders";
    }
  }

  function setHeader(element, value, absent, warn) {
    setText(element, value || absent);
    element.classList.toggle("absent", !value);
    element.classList.toggle("absent-warn", !value && Boolean(warn));
  }

  function showBodies(message, recipient) {
    setText($("pane-text"), message.text);
    setText($("pane-source"), message.source);
    const remote = state.remote ? "&remote=1" : "";
    const url = `/message.html?email=${encodeURIComponent(recipient.email)}&v=${encodeURIComponent(state.version)}${remote}`;
    if (url !== state.frameUrl) {
      state.frameUrl = url;
      $("frame").src = url;
    }
  }

  function showStats(stats) {
    stat($("stat-html"), kilobytes(stats.html_bytes), `/ ${Math.round(stats.clip_bytes / 1024)} KB`);
    meter($("meter-html"), stats.html_bytes / stats.clip_bytes, 0.88);
    stat($("stat-subject"), String(stats.subject_chars), `/ ${stats.subject_limit} chars`);
    meter($("meter-subject"), stats.subject_chars / stats.subject_limit, 0.9);
    stat($("stat-links"), `${stats.links} · ${stats.images}`, "");
  }

  function stat(element, value, limit) {
    element.replaceChildren(document.createTextNode(value), el("span", "stat-limit", limit ? ` ${limit}` : ""));
  }

  // How full a limit is; amber when close, red when over (the checks say why).
  function meter(bar, ratio, near) {
    bar.style.width = `${Math.max(2, Math.min(1, ratio) * 100)}%`;
    bar.dataset.level = ratio > 1 ? "over" : ratio > near ? "near" : "ok";
  }

  // -- errors -------------------------------------------------------------------------

  const ERROR_TITLES = { template: "Template error", input: "The campaign cannot be loaded", http: "Server error" };

  function showError(error) {
    const box = $("error");
    if (!error) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    setText($("error-title"), ERROR_TITLES[error.kind] || "Error");
    const where = [];
    if (error.path) where.push(error.line ? `${error.path}, line ${error.line}` : error.path);
    if (error.recipient) where.push(`rendering for ${error.recipient}`);
    setText($("error-where"), where.join(" — "));
    $("error-where").hidden = where.length === 0;
    setText($("error-message"), error.reason || error.message);
    setText($("error-note"), error.hint || "Fix the file and save it: this page updates by itself.");
  }

  // -- checks -------------------------------------------------------------------------

  const LEVEL_NAMES = { error: ["error", "errors"], warning: ["warning", "warnings"], info: ["note", "notes"] };

  function showChecks(checks, note, error) {
    const counts = $("check-counts");
    const list = $("check-list");
    counts.replaceChildren();
    list.replaceChildren();
    const items = checks ? checks.items : [];
    for (const level of ["error", "warning", "info"]) {
      const count = checks ? checks.counts[level] : 0;
      if (!count) continue;
      const [one, many] = LEVEL_NAMES[level];
      counts.append(el("span", `badge badge-${level}`, `${count} ${count === 1 ? one : many}`));
    }
    if (items.length === 0 && error) {
      // Nothing could be checked: saying "All clear" beside an error would be false.
      counts.append(el("span", "badge badge-muted", "Not checked"));
      list.append(el("li", "check", "The checks run once the campaign loads: see the error above."));
    } else if (items.length === 0) {
      counts.append(el("span", "badge badge-ok", "All clear"));
      list.append(el("li", "check check-ok", "No problems found in this message."));
    }
    for (const finding of items) {
      const item = el("li", `check check-${finding.level}`);
      item.dataset.code = finding.code;
      item.append(el("span", "check-icon", finding.level === "error" ? "✕" : finding.level === "warning" ? "!" : "i"));
      const body = el("div", "check-body");
      body.append(el("div", "check-message", finding.message));
      const meta = [finding.location, finding.recipient, finding.code].filter(Boolean).join(" · ");
      body.append(el("div", "check-meta", meta));
      item.append(body);
      list.append(item);
    }
    setText($("check-note"), note || "");
  }

  // -- the recipient picker -----------------------------------------------------------

  async function loadRecipients() {
    const seq = ++state.searchSeq;
    const data = await getJSON(`/api/recipients?q=${encodeURIComponent(state.query)}`);
    if (seq !== state.searchSeq) return;
    const list = $("recipients");
    list.replaceChildren();
    for (const recipient of data.matches) {
      const item = el("li", "recipient");
      item.setAttribute("role", "option");
      item.tabIndex = -1;
      item.dataset.email = recipient.email;
      item.setAttribute("aria-selected", String(recipient.email === state.email));
      const text = el("div", "recipient-text");
      const name = el("div", recipient.name ? "recipient-name" : "recipient-name unnamed", recipient.name || "no name");
      text.append(name, el("div", "recipient-email", recipient.email));
      item.append(text, el("span", "recipient-line", `line ${recipient.line}`));
      item.addEventListener("click", () => select(recipient.email));
      item.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          select(recipient.email);
        } else if (event.key === "ArrowDown" && item.nextElementSibling) {
          event.preventDefault();
          item.nextElementSibling.focus();
        } else if (event.key === "ArrowUp") {
          event.preventDefault();
          (item.previousElementSibling || $("search")).focus();
        }
      });
      list.append(item);
    }
    let note = "";
    if (data.unavailable) note = "The recipient list could not be read: see the error on the right.";
    else if (data.count === 0) note = "No valid recipient in the list.";
    else if (data.total === 0) note = `No recipient matches “${state.query}”.`;
    else if (data.truncated) note = `Showing the first ${data.matches.length} of ${data.total.toLocaleString()} matches; type to narrow.`;
    else if (state.query) note = `${data.total.toLocaleString()} of ${data.count.toLocaleString()} recipients match.`;
    setText($("recipients-note"), note);
  }

  function select(email) {
    if (!email) return;
    state.email = email;
    for (const item of $("recipients").children) {
      item.setAttribute("aria-selected", String(item.dataset.email === email));
    }
    loadMessage().catch(() => setLive("down", "Server not reachable"));
  }

  function onSearch() {
    clearTimeout(state.searchTimer);
    state.searchTimer = setTimeout(() => {
      state.query = $("search").value.trim();
      loadRecipients().catch(() => setLive("down", "Server not reachable"));
    }, SEARCH_DELAY_MS);
  }

  // -- tabs and widths ----------------------------------------------------------------

  function showTab(tab) {
    state.tab = tab;
    for (const button of document.querySelectorAll(".tab")) {
      button.setAttribute("aria-selected", String(button.dataset.tab === tab));
    }
    $("pane-html").hidden = tab !== "html";
    $("pane-text").hidden = tab !== "text";
    $("pane-source").hidden = tab !== "source";
    $("widths").classList.toggle("is-hidden", tab !== "html");
  }

  function showRemote(remote) {
    state.remote = remote;
    $("remote").setAttribute("aria-pressed", String(remote));
    if (state.frameUrl) {
      state.frameUrl = state.frameUrl.replace(/&remote=1$/, "") + (remote ? "&remote=1" : "");
      $("frame").src = state.frameUrl;
    }
  }

  function showWidth(width) {
    state.width = width;
    $("pane-html").dataset.width = width;
    for (const button of document.querySelectorAll(".segment")) {
      button.setAttribute("aria-pressed", String(button.dataset.width === width));
    }
  }

  // -- live reload --------------------------------------------------------------------

  async function refresh() {
    await Promise.all([loadMessage(), loadRecipients()]);
  }

  async function poll() {
    try {
      const { version } = await getJSON("/api/version");
      if (version !== state.version) {
        const first = state.version === null;
        await refresh();
        setLive("ok", first ? "Live · watching for changes" : `Live · updated ${clock()}`);
      } else if (state.live && state.live.startsWith("down")) {
        setLive("ok", "Live · watching for changes");
      }
    } catch (_) {
      setLive("down", "Server not reachable: is `newsletter preview --serve` still running?");
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  // -- wiring -------------------------------------------------------------------------

  function start() {
    $("search").addEventListener("input", onSearch);
    $("search").addEventListener("keydown", (event) => {
      const first = $("recipients").firstElementChild;
      if (event.key === "ArrowDown" && first) {
        event.preventDefault();
        first.focus();
      } else if (event.key === "Enter" && first) {
        event.preventDefault();
        select(first.dataset.email);
      } else if (event.key === "Escape") {
        $("search").value = "";
        onSearch();
      }
    });
    $("remote").addEventListener("click", () => showRemote(!state.remote));
    $("download").addEventListener("click", (event) => {
      if (!$("download").hasAttribute("href")) event.preventDefault();
    });
    $("prev").addEventListener("click", () => select(state.previous));
    $("next").addEventListener("click", () => select(state.next));
    for (const button of document.querySelectorAll(".tab")) {
      button.addEventListener("click", () => showTab(button.dataset.tab));
    }
    for (const button of document.querySelectorAll(".segment")) {
      button.addEventListener("click", () => showWidth(button.dataset.width));
    }
    document.addEventListener("keydown", (event) => {
      const typing = event.target instanceof HTMLInputElement || event.altKey || event.ctrlKey || event.metaKey;
      if (typing) return;
      if (event.key === "ArrowLeft" || event.key === "k") select(state.previous);
      else if (event.key === "ArrowRight" || event.key === "j") select(state.next);
      else if (event.key === "/") {
        event.preventDefault();
        $("search").focus();
      }
    });
    showTab("html");
    showWidth("desktop");
    poll();
  }

  start();
})();
