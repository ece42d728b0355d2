package oauth

import (
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

// PathUserinfo is the userinfo endpoint, relative to the issuer.
const PathUserinfo = "/api/oidc/userinfo"

// ServeUserinfo is the OpenID Connect userinfo endpoint (Core §5.3): GET or POST, the access
// token in the Authorization header or (POST) the form body. The user is read afresh, so a
// disabled or removed user's token gets invalid_token. The answer is JSON, or a JWT signed per
// the client's userinfo_signed_response_alg.
func (p *Provider) ServeUserinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	switch r.Method {
	case http.MethodGet, http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, POST")
		p.bearerError(w, http.StatusMethodNotAllowed, "invalid_request", "Use GET or POST.")
		return
	}
	token := ""
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, value, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || value == "" {
			p.bearerError(w, http.StatusBadRequest, "invalid_request", "The Authorization header must be a Bearer token.")
			return
		}
		token = strings.TrimSpace(value)
	}
	if r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
		if err := r.ParseForm(); err != nil {
			p.bearerError(w, http.StatusBadRequest, "invalid_request", "The body must be a form of at most 64 KiB.")
			return
		}
		if v := r.PostForm.Get("access_token"); v != "" {
			if token != "" {
				p.bearerError(w, http.StatusBadRequest, "invalid_request", "Send the access token once, in the header or the body.")
				return
			}
			token = v
		}
	}
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+p.cfg.Issuer+`"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_request", "error_description": "An access token is required."})
		return
	}
	sess := &Session{}
	use, ar, err := p.oauth2.IntrospectToken(ctx, token, fosite.AccessToken, sess)
	if err == nil && use != fosite.AccessToken {
		err = fosite.ErrInvalidTokenFormat // fosite tries a refresh token too: not here
	}
	if err != nil {
		if isUnavailable(err) {
			WriteUnavailable(w)
			return
		}
		p.bearerError(w, http.StatusUnauthorized, "invalid_token", "The access token is expired, revoked or unknown.")
		return
	}
	if !ar.GetGrantedScopes().Has("openid") {
		p.bearerError(w, http.StatusForbidden, "insufficient_scope", "The access token was not granted the openid scope.")
		return
	}
	if sess.Username == "" || p.cfg.People == nil {
		p.bearerError(w, http.StatusUnauthorized, "invalid_token", "The access token is not a user's.")
		return
	}
	claims, ok, err := p.cfg.People.Claims(r.Context(), sess.Username, ar.GetGrantedScopes())
	if err != nil {
		WriteUnavailable(w)
		return
	}
	if !ok {
		p.bearerError(w, http.StatusUnauthorized, "invalid_token", "The user of this access token is disabled or no longer exists.")
		return
	}
	out := map[string]any{}
	for k, v := range claims {
		out[k] = v
	}
	out["sub"] = sess.Subject
	if sess.Claims != nil && !sess.Claims.AuthTime.IsZero() {
		out["auth_time"] = sess.Claims.AuthTime.Unix()
	}
	if amr := sess.IDTokenClaims().AuthenticationMethodsReferences; len(amr) > 0 {
		out["amr"] = amr
	}
	client, _ := ar.GetClient().(*clients.Client)
	if client != nil {
		if alg, kid := client.UserinfoSigning(); alg != "" && alg != "none" {
			out["iss"] = p.cfg.Issuer
			out["aud"] = []string{client.ID()}
			out["iat"] = time.Now().Unix()
			out["jti"] = uuid.New().String()
			raw, _, err := p.signer.Generate(ctx, jwt.MapClaims(out), &jwt.Headers{Extra: map[string]any{"kid": kid, "alg": alg}})
			if err != nil {
				p.writeError(w, r, fosite.ErrServerError.WithWrap(err).WithDebug(err.Error()))
				return
			}
			w.Header().Set("Content-Type", "application/jwt")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(raw))
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// bearerError answers an RFC 6750 error with its WWW-Authenticate challenge and a JSON body.
func (p *Provider) bearerError(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusBadRequest {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+p.cfg.Issuer+`", error="`+code+`", error_description="`+desc+`"`)
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}
