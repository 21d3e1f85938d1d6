// perkamo-browser.js — the Perkamo browser client (a dependency-free ES module).
//
// A page reads its signed-in customer's profile, sends the few events its browser key
// allows, and watches the profile change live — never holding a server key. Tokens come
// from the page's own backend, which mints them with its server key
// (POST /v1/browser-tokens) for the customer it has authenticated.
//
//   import { PerkamoBrowser } from "/v1/client/perkamo-browser.js";
//   const perkamo = new PerkamoBrowser({
//     baseUrl: "https://loyalty.example.com",
//     browserKey: "bk_live_…",
//     getToken: () => fetch("/perkamo/token").then((r) => r.json()),        // {token, expires_at}
//     getStreamToken: () => fetch("/perkamo/stream-token").then((r) => r.json()),
//   });
//   const profile = await perkamo.profile();
//   await perkamo.track("lesson.finished", { lesson: 4 });
//   const stop = perkamo.subscribe((profile) => render(profile), (change) => animate(change));
//
// Served by the engine at GET /v1/client/perkamo-browser.js.

const RETRIES = 4;
const MAX_BACKOFF_MS = 30000;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function randomId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return "web_" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// A token as getToken/getStreamToken give it: a string, or {token, expires_at|expires_in}.
function normaliseToken(given) {
  if (typeof given === "string") return { token: given, expiresAt: Date.now() + 60000 };
  const token = given && given.token;
  if (typeof token !== "string" || !token) throw new Error("perkamo: getToken gave no token");
  let expiresAt = Date.now() + 60000;
  if (given.expires_at) expiresAt = Date.parse(given.expires_at);
  else if (Number.isInteger(given.expires_in)) expiresAt = Date.now() + given.expires_in * 1000;
  return { token, expiresAt };
}

export class PerkamoError extends Error {
  constructor(status, body, retryAfter) {
    super((body && body.message) || `Perkamo answered ${status}`);
    this.status = status;
    this.code = body && body.error;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

export class PerkamoBrowser {
  constructor({ baseUrl = "", browserKey, getToken, getStreamToken } = {}) {
    if (typeof getToken !== "function") throw new Error("perkamo: getToken is required");
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.browserKey = browserKey;
    this.getToken = getToken;
    this.getStreamToken = getStreamToken || getToken;
    this._token = null;
  }

  async _clientToken(fresh = false) {
    if (fresh || !this._token || this._token.expiresAt - Date.now() < 10000) {
      this._token = normaliseToken(await this.getToken());
    }
    return this._token.token;
  }

  // One call, retried on network errors, 429 and 503 (honouring retry-after); a 401 gets
  // one fresh token. A body is sent unchanged on every try (same transaction_id).
  async _call(method, path, body) {
    let fresh = false;
    for (let attempt = 0; ; attempt++) {
      const headers = { authorization: `Bearer ${await this._clientToken(fresh)}` };
      if (this.browserKey) headers["x-perkamo-browser-key"] = this.browserKey;
      if (body !== undefined) headers["content-type"] = "application/json";
      let response;
      try {
        response = await fetch(this.baseUrl + path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          credentials: "omit",
        });
      } catch (networkError) {
        if (attempt >= RETRIES) throw networkError;
        await sleep(Math.min(MAX_BACKOFF_MS, 250 * 2 ** attempt));
        continue;
      }
      const text = await response.text();
      const parsed = text ? JSON.parse(text) : null;
      if (response.ok) return parsed;
      const retryAfter = Number(response.headers.get("retry-after")) || 0;
      if (response.status === 401 && !fresh) {
        fresh = true;
        continue;
      }
      if ((response.status === 429 || response.status === 503) && attempt < RETRIES) {
        await sleep(Math.min(MAX_BACKOFF_MS, Math.max(retryAfter * 1000, 250 * 2 ** attempt)));
        continue;
      }
      throw new PerkamoError(response.status, parsed, retryAfter);
    }
  }

  // The customer's profile (null when none exists yet).
  async profile() {
    try {
      return await this._call("GET", "/v1/client/profile");
    } catch (error) {
      if (error instanceof PerkamoError && error.status === 404) return null;
      throw error;
    }
  }

  // What a widget shows of the program.
  program() {
    return this._call("GET", "/v1/client/program");
  }

  // One event for the customer; a generated transaction_id, the same on every retry.
  track(event, context = {}, transactionId = randomId()) {
    return this._call("POST", "/v1/client/events", {
      event,
      context,
      transaction_id: transactionId,
    });
  }

  // Live: onProfile(profile|null) with the whole profile (first, and whenever the stream
  // may have missed something), onChange(change) per committed change. Returns stop().
  subscribe(onProfile, onChange = () => {}) {
    let source = null;
    let stopped = false;
    let failures = 0;
    let lastId = null;
    let renew = null;
    let reopenWhenVisible = null;

    const close = () => {
      if (source) source.close();
      source = null;
      clearTimeout(renew);
    };

    const open = async () => {
      close();
      if (stopped) return;
      let token;
      try {
        token = normaliseToken(await this.getStreamToken());
      } catch (error) {
        return retry();
      }
      let url = `${this.baseUrl}/v1/client/stream?token=${encodeURIComponent(token.token)}`;
      if (lastId !== null) url += `&last_event_id=${encodeURIComponent(lastId)}`;
      source = new EventSource(url);
      // A fresh stream token before this one expires (the server also says "expired").
      renew = setTimeout(open, Math.max(1000, token.expiresAt - Date.now() - 15000));
      source.addEventListener("profile", (message) => {
        failures = 0;
        lastId = message.lastEventId || lastId;
        onProfile(JSON.parse(message.data));
      });
      source.addEventListener("change", (message) => {
        failures = 0;
        lastId = message.lastEventId || lastId;
        onChange(JSON.parse(message.data));
      });
      source.addEventListener("expired", () => open());
      source.addEventListener("evicted", () => {
        // A newer stream of this customer took this one's place (another tab): come back
        // when this page is looked at again, not at once.
        close();
        if (typeof document !== "undefined" && document.visibilityState !== "visible") {
          reopenWhenVisible = () => {
            if (document.visibilityState === "visible") {
              document.removeEventListener("visibilitychange", reopenWhenVisible);
              open();
            }
          };
          document.addEventListener("visibilitychange", reopenWhenVisible);
        } else {
          retry();
        }
      });
      source.onerror = () => {
        if (source && source.readyState === EventSource.CLOSED) retry();
      };
    };

    const retry = () => {
      close();
      if (stopped) return;
      failures += 1;
      const wait = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(failures, 6));
      renew = setTimeout(open, wait * (0.5 + Math.random() / 2));
    };

    open();
    return () => {
      stopped = true;
      close();
      if (reopenWhenVisible) document.removeEventListener("visibilitychange", reopenWhenVisible);
    };
  }
}

export default PerkamoBrowser;
