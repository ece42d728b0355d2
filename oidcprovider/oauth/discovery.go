package oauth

import (
	"net/http"
	"slices"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/keys"
)

// Endpoint paths, relative to the issuer. Authelia's paths first; the seeds' older ones are aliases.
const (
	PathDiscoveryOIDC   = "/.well-known/openid-configuration"
	PathDiscoveryOAuth  = "/.well-known/oauth-authorization-server"
	PathJWKS            = "/jwks.json"
	PathJWKSAlias       = "/api/oidc/jwks"
	PathToken           = "/api/oidc/token"
	PathIntrospection   = "/api/oidc/introspection"
	PathIntrospectAlias = "/api/oidc/introspect"
	PathRevocation      = "/api/oidc/revocation"
	PathRevokeAlias     = "/api/oidc/revoke"
)

var authMethodsSupported = []string{clients.AuthMethodBasic, clients.AuthMethodPost, clients.AuthMethodClientSecretJWT, clients.AuthMethodPrivateKeyJWT}

// tokenAuthMethodsSupported adds public clients' method to the token and revocation endpoints.
var tokenAuthMethodsSupported = []string{clients.AuthMethodBasic, clients.AuthMethodPost, clients.AuthMethodClientSecretJWT, clients.AuthMethodPrivateKeyJWT, clients.AuthMethodNone}

// discoveryDocument advertises what the provider serves: the user flows only when it has a
// users file.
func (p *Provider) discoveryDocument() map[string]any {
	iss := p.cfg.Issuer
	algs := keys.Algorithms(p.cfg.Keys)
	doc := map[string]any{
		"issuer":                                        iss,
		"jwks_uri":                                      iss + PathJWKS,
		"token_endpoint":                                iss + PathToken,
		"introspection_endpoint":                        iss + PathIntrospection,
		"revocation_endpoint":                           iss + PathRevocation,
		"grant_types_supported":                         []string{clients.GrantClientCredentials},
		"response_types_supported":                      []string{},
		"subject_types_supported":                       []string{"public"},
		"id_token_signing_alg_values_supported":         algs,
		"scopes_supported":                              []string{clients.ScopeBearerAuthz},
		"token_endpoint_auth_methods_supported":         authMethodsSupported,
		"introspection_endpoint_auth_methods_supported": authMethodsSupported,
		"revocation_endpoint_auth_methods_supported":    authMethodsSupported,
		"introspection_signing_alg_values_supported":    algs,
		// client assertions (RFC 7523): the same algorithms at every endpoint
		"token_endpoint_auth_signing_alg_values_supported":         clients.AssertionAlgs(),
		"introspection_endpoint_auth_signing_alg_values_supported": clients.AssertionAlgs(),
		"revocation_endpoint_auth_signing_alg_values_supported":    clients.AssertionAlgs(),
	}
	if p.cfg.People == nil {
		return doc
	}
	challenges := []string{"S256"}
	if p.cfg.EnablePKCEPlain {
		challenges = append(challenges, "plain")
	}
	doc["authorization_endpoint"] = iss + PathAuthorization
	doc["userinfo_endpoint"] = iss + PathUserinfo
	doc["end_session_endpoint"] = iss + PathLogout
	doc["grant_types_supported"] = []string{grantAuthorizationCode, "implicit", grantRefreshToken, clients.GrantClientCredentials, grantDeviceCode}
	doc["device_authorization_endpoint"] = iss + PathDeviceAuthorization
	doc["response_types_supported"] = []string{"code", "id_token", "token", "id_token token", "code id_token", "code token", "code id_token token"}
	doc["response_modes_supported"] = append([]string{"query", "fragment", "form_post"}, clients.JARMModes...)
	doc["authorization_signing_alg_values_supported"] = algs
	doc["subject_types_supported"] = []string{"public", "pairwise"}
	doc["scopes_supported"] = append(slices.Clone(p.cfg.ScopesSupported), clients.ScopeBearerAuthz)
	doc["claims_supported"] = p.cfg.ClaimsSupported
	doc["userinfo_signing_alg_values_supported"] = append([]string{"none"}, algs...)
	doc["code_challenge_methods_supported"] = challenges
	doc["prompt_values_supported"] = []string{"none", "login", "consent"}
	doc["token_endpoint_auth_methods_supported"] = tokenAuthMethodsSupported
	doc["revocation_endpoint_auth_methods_supported"] = tokenAuthMethodsSupported
	doc["authorization_response_iss_parameter_supported"] = true
	doc["claims_parameter_supported"] = false
	doc["request_parameter_supported"] = true
	doc["request_uri_parameter_supported"] = false
	doc["request_object_signing_alg_values_supported"] = clients.RequestObjectAlgs()
	doc["pushed_authorization_request_endpoint"] = iss + PathPAR
	doc["require_pushed_authorization_requests"] = p.cfg.RequirePAR
	doc["claim_types_supported"] = []string{"normal"}
	doc["backchannel_logout_supported"] = true
	doc["backchannel_logout_session_supported"] = true
	return doc
}

// ServeDiscovery serves OpenID Connect discovery and RFC 8414 metadata.
func (p *Provider) ServeDiscovery(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, p.discoveryDocument())
}

// ServeJWKS serves the public signing keys.
func (p *Provider) ServeJWKS(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Type", "application/jwk-set+json")
	writeJSON(w, http.StatusOK, keys.JWKS(p.cfg.Keys))
}

// allowGet answers CORS pre-flights and refuses methods other than GET and HEAD.
func allowGet(w http.ResponseWriter, r *http.Request) bool {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return true
	case http.MethodOptions:
		w.Header().Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	w.Header().Set("Allow", "GET, HEAD, OPTIONS")
	w.WriteHeader(http.StatusMethodNotAllowed)
	return false
}
