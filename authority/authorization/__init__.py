"""Authorization code with PKCE, and OpenID Connect (RFC 6749 section 4.1, RFC 7636,
OpenID Connect Core 1.0): the authorization request's rules, consents, the codes and
their redemption, and ID tokens. ``authority.web.authorize`` serves them over HTTP and
``authority.grants.authorization_code`` redeems codes at the token endpoint."""
