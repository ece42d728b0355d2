package oauth

import (
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

// ContentTypeIntrospectionJWT is the media type of a signed introspection answer (RFC 9701),
// also its JWS "typ" header (with the "application/" prefix left out).
const ContentTypeIntrospectionJWT = "application/token-introspection+jwt"

// writeIntrospection answers an introspection request with body: as JSON, or as a JWT signed
// by the provider (RFC 9701) when the caller registered introspection_signed_response_alg or
// asks for one with "Accept: application/token-introspection+jwt". The JWT carries iss, aud
// (the caller's client id), iat and the JSON answer as "token_introspection"; a caller that
// registered no algorithm gets RS256.
func (p *Provider) writeIntrospection(w http.ResponseWriter, r *http.Request, caller *clients.Client, body map[string]any) {
	alg, kid := caller.IntrospectionSigning()
	if alg == "" || alg == "none" {
		if !acceptsIntrospectionJWT(r.Header.Values("Accept")) {
			writeJSON(w, http.StatusOK, body)
			return
		}
		alg, kid = "RS256", ""
	}
	claims := jwt.MapClaims{
		"iss":                 p.cfg.Issuer,
		"aud":                 caller.ID(),
		"iat":                 time.Now().Unix(),
		"token_introspection": body,
	}
	headers := &jwt.Headers{Extra: map[string]any{"kid": kid, "alg": alg, "typ": "token-introspection+jwt"}}
	raw, _, err := p.signer.Generate(r.Context(), claims, headers)
	if err != nil {
		p.writeError(w, r, fosite.ErrServerError.WithWrap(err).WithDebug(err.Error()))
		return
	}
	w.Header().Set("Content-Type", ContentTypeIntrospectionJWT)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(raw))
}

// acceptsIntrospectionJWT reports an Accept header that names the signed introspection media
// type (with a non-zero quality).
func acceptsIntrospectionJWT(accept []string) bool {
	for _, line := range accept {
		for _, part := range strings.Split(line, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || !strings.EqualFold(mt, ContentTypeIntrospectionJWT) {
				continue
			}
			if q, ok := params["q"]; ok && strings.Trim(q, "0.") == "" {
				continue // q=0: explicitly not acceptable
			}
			return true
		}
	}
	return false
}
