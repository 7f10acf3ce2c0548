/* Where the authority is and who this app is: edit for your deployment. */
window.SPA_CONFIG = {
  issuer: "http://127.0.0.1:8000",
  clientId: "PASTE-THE-CLIENT-ID",
  scope: "openid profile",
  // Tokens live in this page's memory only and are lost on reload (log in again,
  // silently when the authority's session stands). Set to true to keep them in
  // localStorage instead, which any script on this origin can read: an opt-in.
  storeTokens: false,
};
