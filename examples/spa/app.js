/* An app on another origin logging its users in with the authorization code flow and
 * PKCE (RFC 7636), then refreshing, then logging out at the authority: plain browser
 * JavaScript, no library. The PKCE verifier, state and nonce wait in sessionStorage
 * for the redirect back (they are worthless without the code, and the code without
 * them); the tokens stay in memory unless SPA_CONFIG.storeTokens opts in. */
"use strict";

(function () {
  const config = window.SPA_CONFIG;
  const here = window.location.origin + window.location.pathname;
  const $ = (id) => document.getElementById(id);
  let tokens = config.storeTokens ? JSON.parse(localStorage.getItem("tokens") || "null") : null;
  let refreshes = 0;

  function say(text, state) {
    $("status").textContent = text;
    if (state) document.body.dataset.state = state;
  }

  function keep(next) {
    tokens = next;
    if (config.storeTokens) localStorage.setItem("tokens", JSON.stringify(next));
  }

  function b64url(bytes) {
    return btoa(String.fromCharCode(...new Uint8Array(bytes)))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  const random = () => b64url(crypto.getRandomValues(new Uint8Array(32)));

  async function metadata() {
    const response = await fetch(`${config.issuer}/.well-known/openid-configuration`);
    return response.json();
  }

  async function token(form) {
    const meta = await metadata();
    const response = await fetch(meta.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ client_id: config.clientId, ...form }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(`${body.error}: ${body.error_description}`);
    return body;
  }

  async function showUser() {
    const meta = await metadata();
    const response = await fetch(meta.userinfo_endpoint, {
      headers: { Authorization: `Bearer ${tokens.access_token}` },
    });
    const user = await response.json();
    $("user").textContent = user.preferred_username || user.sub;
    say("Signed in.", "signed-in");
  }

  async function logIn() {
    const meta = await metadata();
    const verifier = random();
    const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    const pending = { verifier, state: random(), nonce: random() };
    sessionStorage.setItem("pending", JSON.stringify(pending));
    const url = new URL(meta.authorization_endpoint);
    url.search = new URLSearchParams({
      response_type: "code",
      client_id: config.clientId,
      redirect_uri: here,
      scope: config.scope,
      state: pending.state,
      nonce: pending.nonce,
      code_challenge: challenge,
      code_challenge_method: "S256",
    });
    window.location.assign(url);
  }

  async function comeBack(params) {
    const pending = JSON.parse(sessionStorage.getItem("pending") || "null");
    sessionStorage.removeItem("pending");
    window.history.replaceState(null, "", here); // the code never stays in the address
    if (!pending || params.get("state") !== pending.state) throw new Error("unexpected answer");
    if (params.get("iss") !== config.issuer) throw new Error("answer from another issuer");
    if (params.get("error")) throw new Error(params.get("error"));
    keep(await token({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: here,
      code_verifier: pending.verifier,
    }));
  }

  $("login").addEventListener("click", () => logIn().catch((e) => say(e.message, "error")));

  $("refresh").addEventListener("click", async () => {
    try {
      const renewed = await token({ grant_type: "refresh_token", refresh_token: tokens.refresh_token });
      keep({ ...renewed, id_token: tokens.id_token }); // a refresh brings no new ID token
      $("refreshes").textContent = String(++refreshes);
      say("Refreshed.", "signed-in");
    } catch (e) {
      say(e.message, "error");
    }
  });

  $("logout").addEventListener("click", async () => {
    const meta = await metadata();
    const url = new URL(meta.end_session_endpoint);
    url.search = new URLSearchParams({
      id_token_hint: tokens.id_token,
      client_id: config.clientId,
      post_logout_redirect_uri: here,
      state: "signed-out",
    });
    keep(null);
    window.location.assign(url);
  });

  (async () => {
    const params = new URLSearchParams(window.location.search);
    if (params.has("code") || params.has("error")) await comeBack(params);
    if (tokens) return showUser();
    say("Signed out.", "signed-out");
  })().catch((e) => say(e.message, "error"));
})();
