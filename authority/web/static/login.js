/* The login page's behaviour, on top of authority.js (kept out of the HTML so that the
 * page's Content-Security-Policy can forbid inline scripts). */
"use strict";

(function () {
  const auth = new Authority({ onLogout: () => show(null) });
  window.authority = auth; // handy from the console, and for the browser tests
  const $ = (id) => document.getElementById(id);
  // An app's authorization request waiting for this login (/oauth/authorize sealed
  // it; the server checks it again, so only its fixed path is ours to build).
  const query = new URLSearchParams(window.location.search);
  const pending = query.get("continue");
  const fresh = query.get("fresh") === "1"; // the app asked for the password again
  if (query.get("login_hint")) $("login").value = query.get("login_hint");

  function resume() {
    if (!pending) return false;
    window.location.assign("/oauth/authorize?" + new URLSearchParams({ continue: pending }));
    return true;
  }

  function say(text) {
    $("status").textContent = text;
  }

  function show(user) {
    $("signed-in").hidden = !user;
    $("signed-out").hidden = Boolean(user);
    if (user) {
      $("username").textContent = user.username;
      $("email").textContent = user.email;
    }
    document.body.dataset.state = user ? "signed-in" : "signed-out";
  }

  async function check() {
    const user = await auth.me();
    if (user && !fresh && resume()) return user;
    show(user && !fresh ? user : null);
    say(user ? "" : "Please sign in.");
    return user;
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("sign-in").disabled = true;
    try {
      const user = await auth.login($("login").value, $("password").value);
      $("password").value = "";
      if (resume()) return;
      show(user);
      say("");
    } catch (error) {
      const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : "";
      say((error.status === 401 ? "Wrong username or password." : error.message) + wait);
    } finally {
      $("sign-in").disabled = false;
    }
  });

  $("whoami").addEventListener("click", check);

  $("logout").addEventListener("click", async () => {
    await auth.logout();
    show(null);
    say("Signed out.");
  });

  check().catch((error) => say(error.message));
})();
