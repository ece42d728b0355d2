package oidcprovider

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider/claims"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/consent"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/portal"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// people is the provider's view of the user directory: oauth.People.
type people struct{ users users.Directory }

// find is the user called name: nil for none (or disabled), err when the directory cannot be
// asked (wrapping oauth.ErrUnavailable, so the endpoints answer 503 and keep the grant).
func (p people) find(ctx context.Context, name string) (*users.User, error) {
	u, err := p.users.Lookup(ctx, name)
	switch {
	case errors.Is(err, users.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %w", oauth.ErrUnavailable, err)
	case u.Disabled:
		return nil, nil
	}
	return u, nil
}

// Active implements oauth.People.
func (p people) Active(ctx context.Context, name string) (bool, error) {
	u, err := p.find(ctx, name)
	return u != nil, err
}

// Claims implements oauth.People.
func (p people) Claims(ctx context.Context, name string, scopes []string) (map[string]any, bool, error) {
	u, err := p.find(ctx, name)
	if u == nil {
		return nil, false, err
	}
	return claims.ForScopes(u, scopes), true, nil
}

// servePeopleFlow serves the endpoints a browser visits (authorization, consent, sign-out, the
// device page): they need the portal, so without a users_file they are not served.
func (a *App) servePeopleFlow(w http.ResponseWriter, r *http.Request, rel string, next caddyhttp.Handler) error {
	if a.directory == nil {
		return next.ServeHTTP(w, r)
	}
	st := a.running()
	if st == nil || st.flow == nil {
		oauth.WriteUnavailable(w)
		return nil
	}
	if !st.backend.trusted() {
		storeUnreachable(w, r, st)
		return nil
	}
	switch rel {
	case oauth.PathConsent:
		st.flow.ServeConsent(w, r)
	case oauth.PathLogout:
		st.flow.ServeLogout(w, r)
	case oauth.PathDevice:
		st.flow.ServeDevice(w, r)
	default:
		st.flow.ServeAuthorize(w, r)
	}
	return nil
}

// newFlow wires the browser side of the flows to the portal, the users' subjects and consents,
// and the clients' authorization policies.
func (a *App) newFlow(st *runtimeState) *oauth.Flow {
	return oauth.NewFlow(st.provider, oauth.FlowConfig{
		Portal:   flowPortal{st.portal},
		Subjects: flowSubjects{st.subjects},
		Consents: flowConsents{st.consents},
		Policy: func(r *http.Request, c *clients.Client, s *oauth.SignIn) accesscontrol.Policy {
			return a.authorizationPolicy(c, s.Username, s.Groups, clientAddr(r))
		},
		Device: flowPortal{st.portal},
	})
}

// flowPortal is the portal as the flows see it: oauth.Portal.
type flowPortal struct{ *portal.Portal }

// Current implements oauth.Portal.
func (p flowPortal) Current(r *http.Request) *oauth.SignIn {
	_, sess, u := p.Portal.Current(r)
	if sess == nil {
		return nil
	}
	return &oauth.SignIn{
		Username:  u.Name,
		Groups:    u.Groups,
		AuthTime:  sess.AuthTime,
		TwoFactor: sess.Level >= session.TwoFactor,
		AMR:       amrOf(sess),
		Ref:       sess.Ref(),
	}
}

// RenderConsent implements oauth.Portal.
func (p flowPortal) RenderConsent(w http.ResponseWriter, r *http.Request, c *oauth.ConsentPage) {
	p.Portal.RenderConsent(w, r, c.Username, &portal.Consent{
		ClientID: c.ClientID, ClientName: c.ClientName, Scopes: c.Scopes, Audience: c.Audience,
		Flow: c.Flow, Remember: c.Remember, FormAction: c.FormAction,
	})
}

// RenderDevice implements oauth.DevicePages.
func (p flowPortal) RenderDevice(w http.ResponseWriter, r *http.Request, d *oauth.DevicePage) {
	p.Portal.RenderDevice(w, r, d.Status, d.Username, &portal.Device{
		State: d.State, UserCode: d.UserCode, Prefilled: d.Prefilled, Error: d.Error,
		ClientID: d.ClientID, ClientName: d.ClientName, Scopes: d.Scopes, Audience: d.Audience, Flow: d.Flow,
	})
}

// RenderSignOut implements oauth.Portal.
func (p flowPortal) RenderSignOut(w http.ResponseWriter, r *http.Request, s *oauth.SignOutPage) {
	p.Portal.RenderSignOut(w, r, s.Username, s.ClientName, s.Action, s.Params, s.FormAction)
}

// flowSubjects are the users' subject identifiers: oauth.Subjects.
type flowSubjects struct{ *claims.Subjects }

// Subject implements oauth.Subjects.
func (s flowSubjects) Subject(ctx context.Context, username, sectorID string) (string, error) {
	return s.Subjects.Subject(ctx, username, sectorID)
}

// flowConsents are the remembered consents: oauth.Consents.
type flowConsents struct{ *consent.Store }

// Find implements oauth.Consents.
func (c flowConsents) Find(ctx context.Context, username, clientID string, scopes, audience []string, now time.Time) (bool, error) {
	_, found, err := c.Store.Find(ctx, username, clientID, scopes, audience, now)
	return found, err
}

// Remember implements oauth.Consents.
func (c flowConsents) Remember(ctx context.Context, username, clientID string, scopes, audience []string, lifetime time.Duration, now time.Time) error {
	_, err := c.Store.Remember(ctx, username, clientID, scopes, audience, lifetime, now)
	return err
}

// authorizationPolicy is the level the client's authorization_policy (one_factor, two_factor
// or a named policy) asks of the user at addr.
func (a *App) authorizationPolicy(c *clients.Client, username string, groups []string, addr netip.Addr) accesscontrol.Policy {
	if p, ok := a.clientPolicy(c.AuthorizationPolicy()); ok {
		return p.Decide(username, groups, addr)
	}
	return accesscontrol.Deny // validated at provision: unreachable unless the config is inconsistent
}

// clientAddr is the request's client address as Caddy's trusted proxies settle it.
func clientAddr(r *http.Request) netip.Addr {
	addr, err := netip.ParseAddr(ClientIP(r))
	if err != nil {
		return netip.Addr{}
	}
	return addr.Unmap()
}

// amrOf lists the RFC 8176 methods of a session's sign-in. A sign-in through an upstream
// identity provider (Session.Upstream) reports no password and passes on nothing the upstream
// said: only the local second factor given since, and mfa when the session reached two
// factors (the upstream's sign-in counting as one, or as two under two_factor_satisfied); so a
// plain upstream sign-in has no amr. A session begun by a passkey alone (FirstFactor) has no
// PasswordAt: its amr is hwk, user, pin (the passkey's user verification) and mfa, and stays so
// when a later step-up records another factor; pwd only once a password was given.
func amrOf(s *session.Session) []string {
	two := s.Level >= session.TwoFactor
	if s.Upstream != "" {
		amr := claims.AMR(false, two && s.SecondFactor == "totp", two && s.SecondFactor == "webauthn", false)
		if two {
			amr = append(amr, claims.AMRMultiFactor)
		}
		return amr
	}
	passkey := s.FirstFactor == session.FactorPasskey || (two && s.SecondFactor == session.FactorPasskey)
	return claims.AMR(!s.PasswordAt.IsZero(), two && s.SecondFactor == "totp", passkey || (two && s.SecondFactor == "webauthn"), passkey)
}
