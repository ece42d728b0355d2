package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ory/fosite/token/jwt"
	"go.uber.org/zap"

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
		if typ, _ := t.Header["typ"].(string); strings.EqualFold(typ, "logout+jwt") || t.Claims["events"] != nil {
			return nil, &ErrLogoutRequest{"The id_token_hint is a logout token, not an ID token."}
		}
		if iss, _ := t.Claims["iss"].(string); iss != p.cfg.Issuer {
			return nil, &ErrLogoutRequest{"The id_token_hint was issued by another provider."}
		}
		if lr.Subject, _ = t.Claims["sub"].(string); lr.Subject == "" {
			// a signed authorization response (JARM) has our iss and the client's aud, but no
			// one's sub
			return nil, &ErrLogoutRequest{"The id_token_hint is not an ID token this provider issued."}
		}
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

// ServeLogout is the end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0). With an
// id_token_hint that names the signed-in user it signs out at once; otherwise it asks the
// person to confirm (a link alone cannot sign anyone out). Afterwards the browser goes to the
// client's registered post_logout_redirect_uri (with state), or to the portal's signed-out
// page.
func (f *Flow) ServeLogout(w http.ResponseWriter, r *http.Request) {
	portal := f.cfg.Portal
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
	default:
		w.Header().Set("Allow", "GET, POST")
		portal.RenderError(w, r, http.StatusMethodNotAllowed, "This address takes GET or POST", "Sign out from the application again.")
		return
	}
	if err := r.ParseForm(); err != nil {
		portal.RenderError(w, r, http.StatusBadRequest, "This sign-out request cannot be completed", "Its parameters cannot be read.")
		return
	}
	lr, err := f.p.ParseLogout(r.Context(), r.Form)
	var bad *ErrLogoutRequest
	if errors.As(err, &bad) {
		portal.RenderError(w, r, http.StatusBadRequest, "This sign-out request cannot be completed", bad.Reason)
		return
	} else if err != nil {
		portal.RenderError(w, r, http.StatusServiceUnavailable, "Try again in a moment", "The sign-in service is busy or restarting.")
		return
	}
	next := lr.RedirectURI
	if next == "" {
		next = portal.SignedOutURL()
	}
	s := portal.Current(r)
	if s == nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	confirmed := r.Method == http.MethodPost && portal.CheckCSRF(r)
	if !confirmed && lr.Subject != "" {
		sector := ""
		if lr.Client != nil {
			sector = lr.Client.SectorIdentifier()
		}
		if sub, err := f.cfg.Subjects.Subject(r.Context(), s.Username, sector); err == nil && sub == lr.Subject {
			confirmed = true
		}
	}
	if !confirmed {
		params := url.Values{}
		for _, k := range []string{"id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales", "logout_hint"} {
			if v := r.Form.Get(k); v != "" {
				params.Set(k, v)
			}
		}
		page := &SignOutPage{Username: s.Username, Action: f.p.cfg.Issuer + PathLogout, Params: params}
		if lr.Client != nil {
			page.ClientName = lr.Client.Config().Name
		}
		if u, err := url.Parse(lr.RedirectURI); err == nil && u.Host != "" {
			page.FormAction = []string{u.Scheme + "://" + u.Host}
		}
		portal.RenderSignOut(w, r, page)
		return
	}
	if err := portal.EndSession(w, r); err != nil {
		portal.RenderError(w, r, http.StatusServiceUnavailable, "Try again in a moment", "The sign-in service is busy or restarting.")
		return
	}
	client := ""
	if lr.Client != nil {
		client = lr.Client.ID()
	}
	f.logger.Info("signed out by an application", zap.String("user", s.Username), zap.String("client_id", client))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, next, http.StatusSeeOther)
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
