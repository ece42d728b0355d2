package oauth

import (
	"net/http"
	"strings"

	"github.com/ory/fosite"
)

// ServeIntrospection is RFC 7662 token introspection. The caller must authenticate as a
// confidential client (RFC 7662 §2.1): a public client, which proves nothing by its id, gets
// 401 invalid_client as a caller without credentials does. A token's own client, and a client
// whose resource_server_for lists it, read it in full; any other caller learns only whether it
// is active and what it grants, never whose it is (username, sub: the "sub" of a client with a
// sector_identifier_uri is pairwise, and would let another client link people across sectors).
// The answer is JSON, or a signed JWT (RFC 9701) for a caller that registered
// introspection_signed_response_alg or asks for one (see writeIntrospection).
func (p *Provider) ServeIntrospection(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := parseForm(w, r); err != nil {
		p.writeError(w, r, err)
		return
	}
	caller, err := p.authenticateClient(ctx, r, r.PostForm)
	if err == nil && caller.IsPublic() {
		// a new error each time: writeError sets fields of the error it is given
		err = fosite.ErrInvalidClient.WithHint("Introspection needs a confidential client's credentials; a public client cannot introspect.")
	}
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		p.writeError(w, r, fosite.ErrInvalidRequest.WithHint("The token parameter is missing."))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	inactive := map[string]any{"active": false}
	if !strings.HasPrefix(token, TokenPrefix) && !jwtShaped(token) {
		p.writeIntrospection(w, r, caller, inactive)
		return
	}
	sess := &Session{}
	use, ar, err := p.oauth2.IntrospectToken(ctx, token, fosite.TokenUse(r.PostForm.Get("token_type_hint")), sess)
	if err == nil && sess.Username != "" {
		if p.cfg.People == nil {
			err = fosite.ErrInactiveToken
		} else if active, aerr := p.cfg.People.Active(ctx, sess.Username); aerr != nil {
			err = aerr // the directory cannot be asked: 503, never "active"
		} else if !active {
			err = fosite.ErrInactiveToken // a disabled or removed user's tokens are worth nothing
		}
	}
	if err != nil {
		if isUnavailable(err) {
			WriteUnavailable(w)
			return
		}
		p.writeIntrospection(w, r, caller, inactive)
		return
	}
	resp := map[string]any{
		"active":    true,
		"client_id": ar.GetClient().GetID(),
		"scope":     strings.Join(ar.GetGrantedScopes(), " "),
		"aud":       []string(ar.GetGrantedAudience()),
		"iat":       ar.GetRequestedAt().Unix(),
		"iss":       p.cfg.Issuer,
	}
	if s := ar.GetSession(); s != nil {
		if exp := s.GetExpiresAt(fosite.TokenType(use)); !exp.IsZero() {
			resp["exp"] = exp.Unix()
		}
		if caller.ReadsInFull(ar.GetClient().GetID()) {
			if sub := s.GetSubject(); sub != "" {
				resp["sub"] = sub
			}
			if u := s.GetUsername(); u != "" {
				resp["username"] = u
			}
		}
	}
	if use == fosite.AccessToken {
		resp["token_type"] = "bearer"
	}
	p.writeIntrospection(w, r, caller, resp)
}
