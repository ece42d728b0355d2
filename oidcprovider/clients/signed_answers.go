package clients

// Response modes of JWT Secured Authorization Responses (JARM): the answer's parameters travel
// in one signed JWT, the "response" parameter, by query, fragment or form post. ResponseModeJWT
// is the response type's default mode (query for "code", fragment otherwise) with JARM.
const (
	ResponseModeJWT         = "jwt"
	ResponseModeQueryJWT    = "query.jwt"
	ResponseModeFragmentJWT = "fragment.jwt"
	ResponseModeFormPostJWT = "form_post.jwt"
)

// JARMModes are the JARM response modes a client may register.
var JARMModes = []string{ResponseModeJWT, ResponseModeQueryJWT, ResponseModeFragmentJWT, ResponseModeFormPostJWT}

// resolveSignedAnswers checks and resolves the options of the signed answers other than ID
// tokens and userinfo: introspection_signed_response_alg / _key_id (RFC 9701; default "none",
// plain JSON) and authorization_signed_response_alg / _key_id (JARM; default RS256).
func resolveSignedAnswers(cfg *Config, p ProviderSettings) error {
	if cfg.Public && (cfg.IntrospectionSignedResponseAlg != "" || cfg.IntrospectionSignedResponseKeyID != "") {
		opt := "introspection_signed_response_alg"
		if cfg.IntrospectionSignedResponseAlg == "" {
			opt = "introspection_signed_response_key_id"
		}
		return configError(cfg.ID, opt, "a public client cannot call the introspection endpoint; remove the option or make the client confidential with a secret")
	}
	var err error
	if cfg.IntrospectionSignedResponseAlg, err = resolveSigning(cfg.ID, "introspection_signed_response", cfg.IntrospectionSignedResponseAlg, cfg.IntrospectionSignedResponseKeyID, "none", p.SigningKeys); err != nil {
		return err
	}
	if cfg.AuthorizationSignedResponseAlg, err = resolveSigning(cfg.ID, "authorization_signed_response", cfg.AuthorizationSignedResponseAlg, cfg.AuthorizationSignedResponseKeyID, "RS256", p.SigningKeys); err != nil {
		return err
	}
	return nil
}

// alwaysSigned names what an option prefix of resolveSigning signs, for the error that refuses
// "none" where the answer cannot be unsigned.
func alwaysSigned(opt string) string {
	switch opt {
	case "authorization_signed_response":
		return "JARM authorization responses"
	case "id_token_signed_response":
		return "ID tokens"
	}
	return "these answers"
}

// IntrospectionSigning is how introspection answers to the client are signed (RFC 9701): the
// algorithm, "none" (the default) for plain JSON unless the request asks for a JWT, and the
// signing key's id, or "" for the provider's first key of that algorithm.
func (c *Client) IntrospectionSigning() (alg, keyID string) {
	return c.cfg.IntrospectionSignedResponseAlg, c.cfg.IntrospectionSignedResponseKeyID
}

// AuthorizationSigning is how the client's JARM authorization responses are signed: the
// algorithm (default RS256) and the signing key's id, or "" for the provider's first key of
// that algorithm.
func (c *Client) AuthorizationSigning() (alg, keyID string) {
	return c.cfg.AuthorizationSignedResponseAlg, c.cfg.AuthorizationSignedResponseKeyID
}
