// The live demo page: plain EventSource and fetch, PocketBase's realtime protocol.
//
// GET /api/realtime opens the stream; its PB_CONNECT frame names the client id.
// POST /api/realtime {clientId, subscriptions} (with the Authorization header of a
// logged-in user) replaces the client's topics.  Each record event arrives as an
// SSE event named after the topic ("posts/*").  When the stream breaks, the
// browser reconnects by itself and sends Last-Event-ID: the server then gives the
// same client id back (resumed: topics, login and missed events kept) or a new
// one (reset: the page subscribes again and reloads the list).  An RF_RESET
// frame also means events may have been missed: the list is reloaded.
"use strict";

(() => {
  const MAX_ACTIVITY = 30;
  const PAGE_SIZE = 50;
  const RETRY_MS = [500, 1000, 2000, 5000];
  const HIDDEN_KEYS = new Set(["collectionId", "collectionName", "id"]);
  const STATES = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Reconnecting…",
    resumed: "Live: resumed, no event missed",
    reset: "Live: reset, events may have been missed, list reloaded",
    failed: "Not connected",
  };

  const $ = (id) => document.getElementById(id);
  const api = apiBase();
  const app = {
    source: null, // the EventSource
    clientId: "",
    topic: "", // "<collection>/*"
    applied: "", // clientId + topic + token of the last successful POST
    token: "",
    records: new Map(),
    retries: 0,
    resets: 0, // RF_RESET frames seen: one may arrive while a PB_CONNECT is handled
    posting: Promise.resolve(),
  };

  function apiBase() {
    const given = new URLSearchParams(location.search).get("api");
    if (!given) return location.origin;
    try {
      const url = new URL(given);
      if (url.protocol === "http:" || url.protocol === "https:") {
        return url.origin + url.pathname.replace(/\/+$/, "");
      }
    } catch (err) {
      // fall through: not a URL
    }
    return "";
  }

  function setState(name, detail) {
    const el = $("state");
    el.dataset.state = name;
    el.dataset.clientId = app.clientId;
    el.textContent = STATES[name] + (detail ? ` (${detail})` : "");
    note(`connection: ${name}${detail ? ` (${detail})` : ""}`);
  }

  function showError(message) {
    const el = $("error");
    el.textContent = message || "";
    el.hidden = !message;
  }

  function note(text) {
    const item = document.createElement("li");
    const time = document.createElement("time");
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString();
    item.append(time, " ", text);
    const list = $("activity");
    list.prepend(item);
    while (list.children.length > MAX_ACTIVITY) list.lastElementChild.remove();
  }

  async function request(method, path, body) {
    const headers = {};
    if (app.token) headers.Authorization = app.token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(api + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const message = (data && data.message) || `${method} ${path} answered ${response.status}`;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // -- the stream ------------------------------------------------------------

  function connect() {
    if (app.source) app.source.close();
    setState("connecting");
    const source = new EventSource(`${api}/api/realtime`);
    app.source = source;
    source.addEventListener("PB_CONNECT", (event) => onConnect(source, event));
    source.addEventListener("RF_RESET", (event) => onReset(source, event));
    source.addEventListener("error", () => onError(source));
    if (app.topic) source.addEventListener(app.topic, onRecordEvent);
  }

  function reconnectFresh() {
    // A new stream without Last-Event-ID: a new client, as after a logout.
    app.clientId = "";
    app.applied = "";
    connect();
  }

  async function onConnect(source, event) {
    if (source !== app.source) return;
    const previous = app.clientId;
    app.clientId = event.lastEventId || JSON.parse(event.data).clientId;
    app.retries = 0;
    let kind = "live";
    if (previous && previous === app.clientId) kind = "resumed";
    else if (previous) kind = "reset";
    const resets = app.resets;
    try {
      await subscribe();
      if (kind !== "resumed") await loadRecords();
      if (source === app.source && resets === app.resets) setState(kind);
      showError("");
    } catch (err) {
      showError(err.message);
    }
  }

  function onReset(source, event) {
    if (source !== app.source) return;
    app.resets += 1;
    let reason = "";
    try {
      reason = JSON.parse(event.data).reason || "";
    } catch (err) {
      reason = "";
    }
    setState("reset", reason);
    loadRecords().catch((err) => showError(err.message));
  }

  function onError(source) {
    if (source !== app.source) return;
    if (source.readyState === EventSource.CONNECTING) {
      setState("reconnecting"); // the browser retries with Last-Event-ID
      return;
    }
    // Closed for good (an error status or a bad content type): start again.
    setState("reconnecting");
    const delay = RETRY_MS[Math.min(app.retries, RETRY_MS.length - 1)];
    app.retries += 1;
    setTimeout(() => {
      if (source === app.source) connect();
    }, delay);
  }

  // POSTs go one at a time, so the last one sent is the one that counts.
  function subscribe() {
    const run = async () => {
      const key = `${app.clientId}|${app.topic}|${app.token}`;
      if (!app.clientId || key === app.applied) return;
      try {
        await request("POST", "/api/realtime", {
          clientId: app.clientId,
          subscriptions: app.topic ? [app.topic] : [],
        });
        app.applied = key;
      } catch (err) {
        if (err.status === 403) {
          reconnectFresh(); // the client's login cannot change: a new client
          return;
        }
        if (err.status === 404) return; // the stream is gone: its next PB_CONNECT posts again
        throw err;
      }
    };
    app.posting = app.posting.catch(() => undefined).then(run);
    return app.posting;
  }

  function onRecordEvent(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (err) {
      return;
    }
    const record = message.record || {};
    if (!record.id) return;
    if (message.action === "delete") {
      app.records.delete(record.id);
      const row = rowOf(record.id);
      if (row) row.remove();
    } else {
      app.records.set(record.id, record);
      renderRecord(record);
    }
    note(`${message.action} ${event.type.split("/")[0]}/${record.id}`);
    summarize();
  }

  // -- records ---------------------------------------------------------------

  async function loadRecords() {
    const collection = app.topic.split("/")[0];
    if (!collection) return;
    app.records.clear();
    $("records").replaceChildren();
    $("summary").textContent = "Loading…";
    let data;
    try {
      data = await request(
        "GET",
        `/api/collections/${encodeURIComponent(collection)}/records?perPage=${PAGE_SIZE}`,
      );
    } catch (err) {
      $("summary").textContent = `The list is not shown: ${err.message}`;
      return;
    }
    if (`${collection}/*` !== app.topic) return; // another collection was picked meanwhile
    for (const record of data.items || []) {
      app.records.set(record.id, record);
      renderRecord(record, false);
    }
    summarize(data.totalItems);
  }

  function rowOf(id) {
    return $("records").querySelector(`li[data-id="${CSS.escape(id)}"]`);
  }

  function renderRecord(record, flash = true) {
    let row = rowOf(record.id);
    if (!row) {
      row = document.createElement("li");
      row.dataset.id = record.id;
      $("records").prepend(row);
    }
    const id = document.createElement("code");
    id.textContent = record.id;
    const fields = document.createElement("span");
    fields.className = "fields";
    // Sorted, so a listed record and the same record from an event read alike;
    // empty values left out.
    fields.textContent = Object.entries(record)
      .filter(([key, value]) => !HIDDEN_KEYS.has(key) && !isEmpty(value))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, value]) => `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`)
      .join(" · ");
    row.replaceChildren(id, " ", fields);
    if (flash) {
      row.classList.remove("changed");
      void row.offsetWidth; // restart the highlight
      row.classList.add("changed");
    }
  }

  function isEmpty(value) {
    return value === "" || value === null || (Array.isArray(value) && value.length === 0);
  }

  function summarize(total) {
    const count = app.records.size;
    const suffix = total !== undefined && total > count ? ` (first ${count} of ${total})` : "";
    $("summary").textContent = `${count} record${count === 1 ? "" : "s"}${suffix}.`;
  }

  async function pickCollection(name) {
    const topic = name ? `${name}/*` : "";
    if (app.source && app.topic) app.source.removeEventListener(app.topic, onRecordEvent);
    app.topic = topic;
    if (app.source && topic) app.source.addEventListener(topic, onRecordEvent);
    note(`watching ${topic || "nothing"}`);
    try {
      await subscribe();
      await loadRecords();
    } catch (err) {
      showError(err.message);
    }
  }

  // -- login -----------------------------------------------------------------

  async function logIn(event) {
    event.preventDefault();
    const form = event.target;
    const collection = form.elements.collection.value;
    showError("");
    try {
      const data = await request(
        "POST",
        `/api/collections/${encodeURIComponent(collection)}/auth-with-password`,
        { identity: form.elements.identity.value, password: form.elements.password.value },
      );
      app.token = data.token;
      form.elements.password.value = "";
      const who = data.record.email || data.record.username || data.record.id;
      $("who").textContent = `Logged in as ${who} (${collection}).`;
      form.hidden = true;
      $("logout").hidden = false;
      note(`logged in as ${who}`);
      await subscribe(); // a guest client may take a login
      await loadRecords();
    } catch (err) {
      showError(`Login failed: ${err.message}`);
    }
  }

  function logOut() {
    app.token = "";
    $("who").textContent = "Guest: you see what the collections' rules show to anyone.";
    $("login").hidden = false;
    $("logout").hidden = true;
    note("logged out");
    reconnectFresh(); // a logged-in client cannot become a guest
  }

  // -- start -----------------------------------------------------------------

  function option(value, text) {
    const el = document.createElement("option");
    el.value = value;
    el.textContent = text;
    return el;
  }

  async function start() {
    if (!api) {
      setState("failed");
      showError("The ?api= parameter must be an http(s) URL, e.g. ?api=http://127.0.0.1:8090");
      return;
    }
    $("api").textContent = api;
    $("login").addEventListener("submit", logIn);
    $("logout").addEventListener("click", logOut);
    let items = [];
    try {
      items = (await request("GET", "/demo/collections")).items || [];
    } catch (err) {
      showError(`Cannot read the collections from ${api}: ${err.message}`);
    }
    const picker = $("collection");
    const auth = $("auth-collection");
    for (const c of items) {
      picker.append(option(c.name, `${c.name} (${c.type})`));
      if (c.type === "auth") auth.append(option(c.name, c.name));
    }
    const wanted = new URLSearchParams(location.search).get("collection");
    const first = items.find((c) => c.name === wanted) ||
      items.find((c) => c.type === "base") || items[0];
    if (first) picker.value = first.name;
    if (items.some((c) => c.name === "users")) auth.value = "users";
    picker.addEventListener("change", () => pickCollection(picker.value));
    app.topic = first ? `${first.name}/*` : "";
    note(`watching ${app.topic || "nothing"}`);
    connect();
  }

  start();
})();
