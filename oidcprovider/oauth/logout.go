package oauth

import (
	"context"
	"errors"
	"net/url"
	"slices"

	"github.com/ory/fosite/token/jwt"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

// PathLogout is the end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0), relative to
// the issuer.
const PathLogout = "/api/oidc/logout"

// LogoutRequest is a checked RP-initiated logout request.
type LogoutRequest struct {
	// Client is the relying party, known from id_token_hint or client_id; nil when neither was
	// sent.
	Client *clients.Client
	// Subject is the sub of a valid id_token_hint, "" without one.
	Subject string
	// RedirectURI is where to send the browser after signing out: the registered
	// post_logout_redirect_uri with state added, or "" to show the portal's signed-out page.
	RedirectURI string
}

// ErrLogoutRequest is a logout request the provider refuses; its message is safe to show.
type ErrLogoutRequest struct{ Reason string }

func (e *ErrLogoutRequest) Error() string { return e.Reason }

// ParseLogout checks the parameters of an end_session request (already parsed into form):
// an id_token_hint must be an ID token this provider signed (expired ones are accepted, as the
// specification allows) for the client_id if one is given; a post_logout_redirect_uri must be
// registered exactly by that client, so it is only followed when the client is known.
func (p *Provider) ParseLogout(ctx context.Context, form url.Values) (*LogoutRequest, error) {
	lr := &LogoutRequest{}
	clientID := form.Get("client_id")
	if hint := form.Get("id_token_hint"); hint != "" {
		t, err := p.signer.Decode(ctx, hint)
		var ve *jwt.ValidationError
		if t == nil || (err != nil && !(errors.As(err, &ve) && ve.Errors&^jwt.ValidationErrorExpired == 0)) {
			return nil, &ErrLogoutRequest{"The id_token_hint is not an ID token this provider issued."}
		}
		if iss, _ := t.Claims["iss"].(string); iss != p.cfg.Issuer {
			return nil, &ErrLogoutRequest{"The id_token_hint was issued by another provider."}
		}
		lr.Subject, _ = t.Claims["sub"].(string)
		aud := audienceOf(t.Claims["aud"])
		if clientID == "" && len(aud) == 1 {
			clientID = aud[0]
		}
		if clientID != "" && !slices.Contains(aud, clientID) {
			return nil, &ErrLogoutRequest{"The id_token_hint was not issued to this client_id."}
		}
	}
	if clientID != "" {
		c, ok := p.cfg.Clients(clientID)
		if !ok {
			return nil, &ErrLogoutRequest{"The client_id is not a registered client."}
		}
		lr.Client = c
	}
	if ru := form.Get("post_logout_redirect_uri"); ru != "" {
		if lr.Client == nil {
			return nil, &ErrLogoutRequest{"A post_logout_redirect_uri needs an id_token_hint or a client_id."}
		}
		if !slices.Contains(lr.Client.PostLogoutRedirectURIs(), ru) {
			return nil, &ErrLogoutRequest{"The post_logout_redirect_uri is not one the client registered."}
		}
		u, err := url.Parse(ru)
		if err != nil {
			return nil, &ErrLogoutRequest{"The post_logout_redirect_uri is not a URL."}
		}
		if s := form.Get("state"); s != "" {
			q := u.Query()
			q.Set("state", s)
			u.RawQuery = q.Encode()
		}
		lr.RedirectURI = u.String()
	}
	return lr, nil
}

// audienceOf reads an aud claim: a string or a list of strings.
func audienceOf(v any) []string {
	switch a := v.(type) {
	case string:
		return []string{a}
	case []any:
		out := make([]string, 0, len(a))
		for _, x := range a {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return a
	}
	return nil
}
