package oidcprovider

import (
	"net/http"
	"slices"
	"strings"

	"github.com/ory/fosite"
)

var authMethodsSupported = []string{authMethodBasic, authMethodPost}

// discoveryDocument advertises only what the provider serves today.
func (a *App) discoveryDocument(keys []*signingKey) map[string]any {
	algs := []string{}
	for _, k := range keys {
		if !slices.Contains(algs, k.algorithm) {
			algs = append(algs, k.algorithm)
		}
	}
	return map[string]any{
		"issuer":                                        a.issuer,
		"jwks_uri":                                      a.issuer + PathJWKS,
		"token_endpoint":                                a.issuer + PathToken,
		"introspection_endpoint":                        a.issuer + PathIntrospection,
		"revocation_endpoint":                           a.issuer + PathRevocation,
		"grant_types_supported":                         []string{grantClientCredentials},
		"response_types_supported":                      []string{},
		"subject_types_supported":                       []string{"public"},
		"id_token_signing_alg_values_supported":         algs,
		"scopes_supported":                              []string{ScopeBearerAuthz},
		"token_endpoint_auth_methods_supported":         authMethodsSupported,
		"introspection_endpoint_auth_methods_supported": authMethodsSupported,
		"revocation_endpoint_auth_methods_supported":    authMethodsSupported,
	}
}

func (h *Handler) serveDiscovery(w http.ResponseWriter, r *http.Request, st *runtimeState) {
	if !allowGet(w, r) {
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, h.app.discoveryDocument(st.keys))
}

func (h *Handler) serveJWKS(w http.ResponseWriter, r *http.Request, st *runtimeState) {
	if !allowGet(w, r) {
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Type", "application/jwk-set+json")
	writeJSON(w, http.StatusOK, jwks(st.keys))
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

// serveToken is the token endpoint (RFC 6749 §3.2) with the client_credentials grant.
func (h *Handler) serveToken(w http.ResponseWriter, r *http.Request, st *runtimeState) {
	ctx := r.Context()
	if err := parseForm(w, r); err != nil {
		h.writeOAuthError(w, r, err)
		return
	}
	switch gt := r.PostForm.Get("grant_type"); {
	case gt == "":
		h.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHint("The grant_type parameter is missing."))
		return
	case gt != grantClientCredentials:
		h.writeOAuthError(w, r, fosite.ErrUnsupportedGrantType.WithHintf("The grant type '%s' is not supported; this provider serves client_credentials.", gt))
		return
	}
	for _, k := range []string{"scope", "grant_type"} {
		if len(r.PostForm[k]) > 1 {
			h.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHintf("The %s parameter is repeated.", k))
			return
		}
	}

	sess := &Session{Issuer: h.app.issuer}
	ar, err := st.provider.oauth2.NewAccessRequest(ctx, r, sess)
	if err != nil {
		h.writeOAuthError(w, r, err)
		return
	}
	client, ok := ar.GetClient().(*Client)
	if !ok {
		h.writeOAuthError(w, r, fosite.ErrInvalidClient)
		return
	}

	requested := ar.GetRequestedScopes()
	if slices.Contains(requested, ScopeBearerAuthz) {
		for _, s := range requested {
			if s != ScopeBearerAuthz && s != "offline" && s != "offline_access" {
				h.writeOAuthError(w, r, fosite.ErrInvalidScope.WithHintf("The scope '%s' must be requested alone or with offline_access.", ScopeBearerAuthz))
				return
			}
		}
	}
	for _, s := range requested {
		ar.GrantScope(s)
	}

	resources := r.PostForm["resource"]
	for _, res := range resources {
		if err := parseResource(res); err != nil {
			h.writeOAuthError(w, r, errInvalidTarget(err.Error()))
			return
		}
		if !audienceAllowed(client.cfg.Audience, res) {
			h.writeOAuthError(w, r, errInvalidTarget("The client may not request the resource '"+res+"'."))
			return
		}
	}
	audiences := slices.Clone([]string(ar.GetRequestedAudience()))
	audiences = append(audiences, resources...)
	if len(audiences) == 0 && client.cfg.RequestedAudienceMode == "implicit" {
		audiences = slices.Clone(client.cfg.Audience)
	}
	for _, a := range audiences {
		if !slices.Contains(ar.GetGrantedAudience(), a) {
			ar.GrantAudience(a)
		}
	}

	sess.Subject = client.ID()
	sess.ClientCredentials = true
	resp, err := st.provider.oauth2.NewAccessResponse(ctx, ar)
	if err != nil {
		h.writeOAuthError(w, r, err)
		return
	}
	st.provider.oauth2.WriteAccessResponse(ctx, w, ar, resp)
}

func errInvalidTarget(desc string) *fosite.RFC6749Error {
	return &fosite.RFC6749Error{ErrorField: "invalid_target", DescriptionField: desc, CodeField: http.StatusBadRequest}
}

// serveIntrospection is RFC 7662 token introspection; the caller must authenticate as a client.
func (h *Handler) serveIntrospection(w http.ResponseWriter, r *http.Request, st *runtimeState) {
	ctx := r.Context()
	if err := parseForm(w, r); err != nil {
		h.writeOAuthError(w, r, err)
		return
	}
	if _, err := h.app.authenticateClient(ctx, r, r.PostForm); err != nil {
		h.writeOAuthError(w, r, err)
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		h.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHint("The token parameter is missing."))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	inactive := map[string]any{"active": false}
	if !strings.HasPrefix(token, TokenPrefix) {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	sess := &Session{}
	use, ar, err := st.provider.oauth2.IntrospectToken(ctx, token, fosite.TokenUse(r.PostForm.Get("token_type_hint")), sess)
	if err != nil {
		if isClosedErr(err) {
			writeUnavailable(w)
			return
		}
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	resp := map[string]any{
		"active":    true,
		"client_id": ar.GetClient().GetID(),
		"scope":     strings.Join(ar.GetGrantedScopes(), " "),
		"aud":       []string(ar.GetGrantedAudience()),
		"iat":       ar.GetRequestedAt().Unix(),
		"iss":       h.app.issuer,
	}
	if s := ar.GetSession(); s != nil {
		if exp := s.GetExpiresAt(fosite.TokenType(use)); !exp.IsZero() {
			resp["exp"] = exp.Unix()
		}
		if sub := s.GetSubject(); sub != "" {
			resp["sub"] = sub
		}
		if u := s.GetUsername(); u != "" {
			resp["username"] = u
		}
	}
	if use == fosite.AccessToken {
		resp["token_type"] = "bearer"
	}
	writeJSON(w, http.StatusOK, resp)
}

// serveRevocation is RFC 7009 token revocation: 200 for unknown tokens; a client may revoke
// only its own tokens.
func (h *Handler) serveRevocation(w http.ResponseWriter, r *http.Request, st *runtimeState) {
	ctx := r.Context()
	if err := parseForm(w, r); err != nil {
		h.writeOAuthError(w, r, err)
		return
	}
	if r.PostForm.Get("token") == "" {
		h.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHint("The token parameter is missing."))
		return
	}
	err := st.provider.oauth2.NewRevocationRequest(ctx, r)
	if err != nil && !isUnknownTokenErr(err) {
		h.writeOAuthError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
}
