package oauth

import (
	"net/http"

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

var authMethodsSupported = []string{clients.AuthMethodBasic, clients.AuthMethodPost}

// discoveryDocument advertises only what the provider serves today.
func (p *Provider) discoveryDocument() map[string]any {
	iss := p.cfg.Issuer
	return map[string]any{
		"issuer":                                        iss,
		"jwks_uri":                                      iss + PathJWKS,
		"token_endpoint":                                iss + PathToken,
		"introspection_endpoint":                        iss + PathIntrospection,
		"revocation_endpoint":                           iss + PathRevocation,
		"grant_types_supported":                         []string{clients.GrantClientCredentials},
		"response_types_supported":                      []string{},
		"subject_types_supported":                       []string{"public"},
		"id_token_signing_alg_values_supported":         keys.Algorithms(p.cfg.Keys),
		"scopes_supported":                              []string{clients.ScopeBearerAuthz},
		"token_endpoint_auth_methods_supported":         authMethodsSupported,
		"introspection_endpoint_auth_methods_supported": authMethodsSupported,
		"revocation_endpoint_auth_methods_supported":    authMethodsSupported,
	}
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
