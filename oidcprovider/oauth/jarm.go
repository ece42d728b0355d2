package oauth

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

// JWT Secured Authorization Response Mode for OAuth 2.0 (JARM). fosite v0.47 has no JARM but
// lets a fosite.ResponseModeHandler serve response modes of its own: jarmHandler is that
// handler, so fosite's request parsing accepts the modes (and checks them against the client's
// response_modes) and its WriteAuthorizeResponse hands their answers here. The provider's own
// WriteAuthorizeError calls writeJARM for errors.

// jarmLifetime is how long a JARM response is valid (its exp): long enough for a slow browser,
// short because it carries a code.
const jarmLifetime = 10 * time.Minute

// jarmModes are the JARM response modes, as fosite takes them.
var jarmModes = fosite.ResponseModeTypes{
	clients.ResponseModeJWT, clients.ResponseModeQueryJWT, clients.ResponseModeFragmentJWT, clients.ResponseModeFormPostJWT,
}

// jarmHandler is fosite's handler of the JARM response modes.
type jarmHandler struct {
	p *Provider
}

var _ fosite.ResponseModeHandler = (*jarmHandler)(nil)

// ResponseModes implements fosite.ResponseModeHandler.
func (h *jarmHandler) ResponseModes() fosite.ResponseModeTypes { return jarmModes }

// WriteAuthorizeResponse implements fosite.ResponseModeHandler: the response's parameters (code,
// state, iss, tokens…) in one signed JWT.
func (h *jarmHandler) WriteAuthorizeResponse(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, resp fosite.AuthorizeResponder) {
	for k := range resp.GetHeader() {
		w.Header().Set(k, resp.GetHeader().Get(k))
	}
	h.p.writeJARM(ctx, w, ar, resp.GetParameters())
}

// WriteAuthorizeError implements fosite.ResponseModeHandler. The provider writes its errors with
// its own WriteAuthorizeError, which comes to writeJARM too; this serves fosite's path.
func (h *jarmHandler) WriteAuthorizeError(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, err error) {
	rfc := rfcError(err)
	params := url.Values{"error": {rfc.ErrorField}}
	if d := rfc.GetDescription(); d != "" {
		params.Set("error_description", d)
	}
	if s := ar.GetState(); s != "" {
		params.Set("state", s)
	}
	params.Set("iss", h.p.cfg.Issuer)
	h.p.writeJARM(ctx, w, ar, params)
}

// isJARM reports a JARM response mode.
func isJARM(m fosite.ResponseModeType) bool { return jarmModes.Has(m) }

// jarmMode resolves ar's JARM mode to query.jwt, fragment.jwt or form_post.jwt: "jwt" is
// query.jwt for the response type "code" and fragment.jwt for the others (whose answers carry
// tokens). The response type is read from the form when the request failed before fosite
// parsed it.
func jarmMode(ar fosite.AuthorizeRequester) fosite.ResponseModeType {
	m := ar.GetResponseMode()
	if m != clients.ResponseModeJWT {
		return m
	}
	types := ar.GetResponseTypes()
	if len(types) == 0 {
		types = fosite.Arguments(fosite.RemoveEmpty(strings.Split(ar.GetRequestForm().Get("response_type"), " ")))
	}
	if types.ExactOne("code") {
		return clients.ResponseModeQueryJWT
	}
	return clients.ResponseModeFragmentJWT
}

// checkJARMMode refuses query.jwt for response types whose answers carry tokens (JARM §2.3.1:
// only with an encrypted response, which Portcullis does not make).
func checkJARMMode(ar fosite.AuthorizeRequester) error {
	if ar.GetResponseMode() == clients.ResponseModeQueryJWT && !ar.GetResponseTypes().ExactOne("code") {
		return fosite.ErrUnsupportedResponseMode.WithHintf("The response_mode query.jwt cannot carry the tokens of the response_type %q; use fragment.jwt, form_post.jwt or jwt.", strings.Join(ar.GetResponseTypes(), " "))
	}
	return nil
}

// writeJARM sends params to ar's redirect URI as a JARM response: one JWT, the "response"
// parameter, signed per the client's authorization_signed_response_alg/key_id (default RS256)
// with iss, aud (the client id), iat and exp beside the parameters, by query, fragment or form
// post. The redirect URI must have been validated.
func (p *Provider) writeJARM(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, params url.Values) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	alg, kid := "RS256", ""
	if c, ok := ar.GetClient().(*clients.Client); ok {
		alg, kid = c.AuthorizationSigning()
	}
	now := time.Now()
	claims := jwt.MapClaims{}
	for k, v := range params {
		if len(v) > 0 {
			claims[k] = v[0]
		}
	}
	claims["iss"] = p.cfg.Issuer
	claims["aud"] = ar.GetClient().GetID()
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(jarmLifetime).Unix()
	raw, _, err := p.signer.Generate(ctx, claims, &jwt.Headers{Extra: map[string]any{"kid": kid, "alg": alg}})
	if err != nil {
		p.cfg.Logger.Error("signing a JARM authorization response", zap.String("client_id", ar.GetClient().GetID()), zap.Error(err))
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error", "error_description": "The provider could not sign the authorization response; see its log."})
		return
	}
	redirectURI := *ar.GetRedirectURI()
	redirectURI.Fragment = ""
	switch jarmMode(ar) {
	case clients.ResponseModeFormPostJWT:
		w.Header().Set("Content-Type", "text/html;charset=UTF-8")
		w.Header().Set("Content-Security-Policy", formPostCSP)
		fosite.WriteAuthorizeFormPostResponse(redirectURI.String(), url.Values{"response": {raw}}, formPostTemplate, w)
		return
	case clients.ResponseModeFragmentJWT:
		w.Header().Set("Location", redirectURI.String()+"#"+url.Values{"response": {raw}}.Encode())
	default: // query.jwt
		q := redirectURI.Query()
		q.Set("response", raw)
		redirectURI.RawQuery = q.Encode()
		w.Header().Set("Location", redirectURI.String())
	}
	w.WriteHeader(http.StatusSeeOther)
}
