package oauth

import (
	"net/http"

	"github.com/ory/fosite"
)

// ServeRevocation is RFC 7009 token revocation: the client authenticates; an unknown, invalid or
// foreign-secret token is answered 200 and changes nothing; a client may revoke only its own
// tokens (400 unauthorized_client otherwise).
func (p *Provider) ServeRevocation(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := parseForm(w, r); err != nil {
		p.writeError(w, r, err)
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		p.writeError(w, r, fosite.ErrInvalidRequest.WithHint("The token parameter is missing."))
		return
	}
	var err error
	if p.authentic(ctx, token) {
		err = p.oauth2.NewRevocationRequest(ctx, r)
	} else {
		// fosite finds a token by its signature half alone; only a whole, authentic token may
		// revoke anything, so anything else is treated as unknown once the client authenticated.
		_, err = p.authenticateClient(ctx, r, r.PostForm)
	}
	if err != nil && !isUnknownTokenErr(err) {
		p.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
}
