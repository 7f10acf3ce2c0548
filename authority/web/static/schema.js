/*
 * schema.js: starts Swagger UI on /schema (the page forbids inline scripts). The
 * document's URL comes from the page; the validator badge is off, since it would send
 * the document to a third party.
 */
(function () {
  "use strict";
  const root = document.getElementById("swagger-ui");
  globalThis.SwaggerUIBundle({
    url: root.dataset.url,
    domNode: root,
    validatorUrl: null,
    deepLinking: true,
  });
})();
