package clients

// resolveAccessTokenSigning checks access_token_signed_response_alg and
// access_token_signed_response_key_id against the provider's signing keys, as the ID token's and
// userinfo's options are checked (resolveSigning): "none" (the default) keeps the client's access
// tokens opaque; an algorithm must be one a signing key serves; a key id picks the key and implies
// its algorithm, and an algorithm that does not match it is refused, naming the client and the
// key. The effective algorithm is written back into cfg.
func resolveAccessTokenSigning(cfg *Config, keys []SigningKey) error {
	alg, err := resolveSigning(cfg.ID, "access_token_signed_response", cfg.AccessTokenSignedResponseAlg, cfg.AccessTokenSignedResponseKeyID, "none", keys)
	if err != nil {
		return err
	}
	cfg.AccessTokenSignedResponseAlg = alg
	return nil
}

// AccessTokenSigning is how the client's access tokens are made: "none" (the default) for opaque
// tokens, else the JWS algorithm of its JWT access tokens (RFC 9068) and the signing key's id, or
// "" for the provider's first key of that algorithm.
func (c *Client) AccessTokenSigning() (alg, keyID string) {
	return c.cfg.AccessTokenSignedResponseAlg, c.cfg.AccessTokenSignedResponseKeyID
}

// JWTAccessTokens reports whether the client's access tokens are JWTs (RFC 9068).
func (c *Client) JWTAccessTokens() bool {
	return c.cfg.AccessTokenSignedResponseAlg != "" && c.cfg.AccessTokenSignedResponseAlg != "none"
}
