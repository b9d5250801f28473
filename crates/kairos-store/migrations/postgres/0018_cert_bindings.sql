-- Certificate-bound tokens (RFC 8705): the client certificate a request's tokens are
-- bound to (cnf.x5t#S256, base64url SHA-256 of the certificate's DER), written before the
-- request, so a token minted again for it (a read of the request after approval, a
-- renewal) is bound to the same certificate. Kept as long as the request.
CREATE TABLE cert_bindings (
    request_id  TEXT PRIMARY KEY,
    x5t_s256    TEXT NOT NULL
);
