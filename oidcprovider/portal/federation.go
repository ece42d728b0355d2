package portal

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/federation"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// This file is sign-in through upstream identity providers (package federation): the buttons'
// POST /federation/<name> starts a flow (a sign-in, or linking an identity to the signed-in
// person, behind elevation), GET /federation/<name>/callback is the redirect URI registered at
// the upstream, and POST /settings/federation/unlink removes a link (behind elevation). The
// flow is bound to the browser by a short-lived cookie whose value's digest the flow's record
// holds; a callback without it, replayed, or with another state is refused.

const (
	pathFederation = "/federation/"
	pathUnlink     = "/settings/federation/unlink"
	callbackSuffix = "/callback"
)

// CreateUser adds a local user for an upstream identity (create_users), returning the new user.
type CreateUser func(ctx context.Context, id *federation.Identity) (*users.User, error)

// isFederationPath reports a path of the flows.
func isFederationPath(rel string) bool {
	return strings.HasPrefix(rel, pathFederation) || rel == pathUnlink
}

// FederationCallbackPath is the callback path of the provider named name, relative to the
// issuer: the redirect URI to register at the upstream is the issuer followed by it.
func FederationCallbackPath(name string) string { return pathFederation + name + callbackSuffix }

// provider is the identity provider named name, or nil.
func (p *Portal) provider(name string) *federation.Provider {
	for _, fp := range p.cfg.IdentityProviders {
		if fp.Config().Name == name {
			return fp
		}
	}
	return nil
}

// providerButton is a provider on the sign-in and account pages.
type providerButton struct {
	Name, DisplayName string
}

// linkItem is a linked identity on the account page.
type linkItem struct {
	Provider, DisplayName, Subject, Who string
	Linked                              federation.Link
}

// federationButtons fills the pages' provider buttons and the origins their forms lead to; it
// starts a discovery in the background for a provider not discovered yet, so the page's
// form-action soon names its authorization endpoint.
func (p *Portal) federationButtons(d *pageData) {
	for _, fp := range p.cfg.IdentityProviders {
		c := fp.Config()
		d.Providers = append(d.Providers, providerButton{Name: c.Name, DisplayName: c.DisplayName})
		d.FormAction = append(d.FormAction, fp.Origins()...)
		go func() { _ = fp.Discover(context.Background()) }()
	}
}

// federationLinks fills the account page's linked identities, and the name of the provider
// the session came through.
func (p *Portal) federationLinks(ctx context.Context, u *users.User, d *pageData) error {
	if name := d.Session.Upstream; name != "" {
		d.Upstream = name
		if fp := p.provider(name); fp != nil {
			d.Upstream = fp.Config().DisplayName
		}
	}
	if len(p.cfg.IdentityProviders) == 0 || p.cfg.Links == nil {
		return nil
	}
	p.federationButtons(d)
	links, err := p.cfg.Links.List(ctx, u.Name)
	if err != nil {
		return err
	}
	for _, l := range links {
		item := linkItem{Provider: l.Provider, DisplayName: l.Provider, Subject: l.Subject, Linked: l}
		if fp := p.provider(l.Provider); fp != nil {
			item.DisplayName = fp.Config().DisplayName
		}
		item.Who = l.Username
		if l.Email != "" && l.Email != l.Username {
			if item.Who != "" {
				item.Who += " · "
			}
			item.Who += l.Email
		}
		d.Links = append(d.Links, item)
	}
	return nil
}

// serveFederation routes the flows' paths.
func (p *Portal) serveFederation(w http.ResponseWriter, r *http.Request, rel string) {
	if rel == pathUnlink {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p.unlink(w, r)
		return
	}
	name, callback := strings.CutSuffix(strings.TrimPrefix(rel, pathFederation), callbackSuffix)
	fp := p.provider(name)
	switch {
	case fp == nil:
		http.NotFound(w, r)
	case callback && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		p.federationCallback(w, r, fp)
	case !callback && r.Method == http.MethodPost:
		p.federationStart(w, r, fp)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
	}
}

// bindingCookie is the name of the cookie that binds a flow of provider name to the browser.
func (p *Portal) bindingCookie(name string) string {
	if p.cfg.Secure {
		return "__Host-" + p.cfg.CookieName + "_fed_" + name
	}
	return p.cfg.CookieName + "_fed_" + name
}

// federationStart begins a flow (POST, CSRF checked by ServeHTTP): a sign-in carrying rd, or,
// with intent=link, linking an identity to the signed-in person in an elevated session.
func (p *Portal) federationStart(w http.ResponseWriter, r *http.Request, fp *federation.Provider) {
	ctx := r.Context()
	c := fp.Config()
	pend := federation.Pending{Intent: federation.IntentSignIn, RD: p.safeRedirect(r.PostFormValue("rd"))}
	if r.PostFormValue("intent") == federation.IntentLink {
		_, _, u, ok := p.deviceChange(w, r, PathSettings, p.cfg.Links != nil)
		if !ok {
			return
		}
		pend = federation.Pending{Intent: federation.IntentLink, User: u.Name}
	}
	authURL, binding, err := fp.Begin(ctx, pend)
	if errors.Is(err, federation.ErrUnreachable) {
		p.cfg.Logger.Warn("identity provider unreachable", zap.String("provider", c.Name), zap.Error(err))
		p.upstreamDown(w, r, c, pend.RD)
		return
	} else if err != nil {
		p.cfg.Logger.Error("portal: starting a sign-in through an identity provider", zap.String("provider", c.Name), zap.Error(err))
		p.unavailable(w, r)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: p.bindingCookie(c.Name), Value: binding, Path: "/", MaxAge: int(federation.FlowLifespan.Seconds()),
		HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode})
	redirect(w, r, authURL)
}

// federationPage renders the page of a flow that ended without a sign-in.
func (p *Portal) federationPage(w http.ResponseWriter, r *http.Request, status int, title, msg, rd string) {
	p.render(w, r, status, "federation", &pageData{Title: title, Error: msg, Next: p.withRD(PathSignIn, rd)})
}

// upstreamDown is the page for an upstream that cannot be reached: the password still works.
func (p *Portal) upstreamDown(w http.ResponseWriter, r *http.Request, c federation.Config, rd string) {
	w.Header().Set("Retry-After", "30")
	p.federationPage(w, r, http.StatusServiceUnavailable, "Could not reach "+c.DisplayName,
		"We could not reach "+c.DisplayName+" just now. Sign in with your password instead, or try again in a few minutes.", rd)
}

// federationCallback completes a flow (GET from the upstream).
func (p *Portal) federationCallback(w http.ResponseWriter, r *http.Request, fp *federation.Provider) {
	ctx := r.Context()
	c := fp.Config()
	ip := p.cfg.ClientIP(r)
	var binding string
	if ck, err := r.Cookie(p.bindingCookie(c.Name)); err == nil {
		binding = ck.Value
	}
	id, pend, err := fp.Finish(ctx, r.URL.Query(), binding)
	if !errors.Is(err, federation.ErrState) {
		// the flow is spent: its binding is worth nothing now (a stray callback with another
		// state leaves it, so the browser's own callback still works)
		http.SetCookie(w, &http.Cookie{Name: p.bindingCookie(c.Name), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode})
	}
	rd := ""
	if pend != nil {
		rd = pend.RD
	}
	if err != nil {
		p.cfg.Logger.Info("sign-in through an identity provider refused", zap.String("provider", c.Name), zap.String("remote_ip", ip), zap.Error(err))
		switch {
		case errors.Is(err, federation.ErrUnreachable):
			p.upstreamDown(w, r, c, rd)
		case errors.Is(err, federation.ErrState):
			p.federationPage(w, r, http.StatusBadRequest, "This sign-in has expired",
				"This answer from "+c.DisplayName+" is not for a sign-in this browser started, or it was used already or has expired. Start again from the sign-in page.", rd)
		case errors.Is(err, federation.ErrDenied):
			p.federationPage(w, r, http.StatusForbidden, c.DisplayName+" did not sign you in",
				c.DisplayName+" did not sign you in (you may have cancelled). Try again, or sign in with your password.", rd)
		case errors.Is(err, federation.ErrToken):
			p.federationPage(w, r, http.StatusBadRequest, "The answer could not be verified",
				"The answer from "+c.DisplayName+" could not be verified, so you are not signed in. Try again; if it lasts, tell the people who run this service.", rd)
		default:
			p.cfg.Logger.Error("portal: completing a sign-in through an identity provider", zap.String("provider", c.Name), zap.Error(err))
			p.unavailable(w, r)
		}
		return
	}
	if pend.Intent == federation.IntentLink {
		p.federationLink(w, r, c, id, pend)
		return
	}
	u, viaLink, err := federation.Resolve(ctx, c, p.cfg.Links, p.cfg.Users, id)
	if errors.Is(err, federation.ErrUnknown) && c.CreateUsers && p.cfg.CreateUser != nil && id.Username != "" {
		u, err = p.cfg.CreateUser(ctx, id)
		if err == nil {
			p.cfg.Logger.Info("user created for an identity provider's sign-in", zap.String("provider", c.Name), zap.String("user", u.Name), zap.String("remote_ip", ip))
		} else if !errors.Is(err, users.ErrUnavailable) {
			p.cfg.Logger.Info("no user created for an identity provider's sign-in", zap.String("provider", c.Name), zap.String("remote_ip", ip), zap.Error(err))
			err = federation.ErrUnknown
		}
	}
	if err != nil {
		p.federationRefused(w, r, c, id, rd, err)
		return
	}
	if !viaLink {
		// the identity is linked from now on: listed on the account page, and found again
		// when its address or name changes upstream
		if err := p.cfg.Links.Add(ctx, id, u.Name, p.cfg.Now()); err != nil && !errors.Is(err, federation.ErrLinkedElsewhere) {
			p.cfg.Logger.Error("portal: linking an identity at sign-in", zap.String("provider", c.Name), zap.Error(err))
		}
	}
	level := session.OneFactor
	if c.TwoFactorSatisfied && id.MFA {
		level = session.TwoFactor
	}
	to, ok := p.beginSession(w, r, u, rd, func(ctx context.Context) (string, *session.Session, error) {
		return p.cfg.Sessions.CreateUpstream(ctx, u.Name, level, false, c.Name)
	}, zap.String("factor", "upstream"), zap.String("provider", c.Name), zap.Bool("two_factor", level == session.TwoFactor))
	if ok {
		p.continueTo(w, r, to)
	}
}

// continueTo sends the browser on from a callback: a redirect within the portal's origin, and a
// page that moves on by itself to another origin. The browser arrived through a form at the
// upstream, whose Content-Security-Policy form-action (ours, GitHub's) Chrome checks on every
// redirect that follows: it names our callback, not the site the person was going to.
func (p *Portal) continueTo(w http.ResponseWriter, r *http.Request, to string) {
	if u, err := url.Parse(to); err == nil && (u.Host == "" || u.Scheme+"://"+u.Host == p.origin) {
		redirect(w, r, to)
		return
	}
	p.render(w, r, http.StatusOK, "continue", &pageData{Title: "You are signed in", Next: to})
}

// federationRefused is the page for an identity that maps to no usable local user.
func (p *Portal) federationRefused(w http.ResponseWriter, r *http.Request, c federation.Config, id *federation.Identity, rd string, err error) {
	if errors.Is(err, users.ErrUnavailable) {
		p.directoryDown(w, r)
		return
	}
	reason, msg := "", ""
	switch {
	case errors.Is(err, federation.ErrDomain):
		reason, msg = "e-mail domain not allowed", "Accounts of "+c.DisplayName+" with this e-mail address's domain may not sign in here."
	case errors.Is(err, federation.ErrUnverified):
		reason, msg = "e-mail address not verified", c.DisplayName+" has not verified your e-mail address, so it cannot tell us who you are here. Verify it at "+c.DisplayName+", or sign in with your password."
	case errors.Is(err, federation.ErrDisabled):
		reason, msg = "user disabled", "Your account here is disabled. Ask the people who run this service."
	case errors.Is(err, federation.ErrUnlinked):
		reason, msg = "identity unlinked", "This "+c.DisplayName+" identity was unlinked from its account here, so it no longer signs anyone in. Sign in with your password and link "+c.DisplayName+" again on your account page if you want it back."
	case errors.Is(err, federation.ErrUnknown):
		reason, msg = "no matching user", "There is no account here for your "+c.DisplayName+" identity. Sign in with your password and link "+c.DisplayName+" on your account page, or ask the people who run this service for an account."
	default:
		p.cfg.Logger.Error("portal: finding the user of an identity provider's sign-in", zap.String("provider", c.Name), zap.Error(err))
		p.unavailable(w, r)
		return
	}
	p.cfg.Logger.Info("sign-in through an identity provider refused", zap.String("provider", c.Name), zap.String("reason", reason),
		zap.String("upstream_subject", id.Subject), zap.String("remote_ip", p.cfg.ClientIP(r)))
	p.federationPage(w, r, http.StatusForbidden, "You cannot sign in with "+c.DisplayName, msg, rd)
}

// federationLink links the identity to the signed-in person who started the flow.
func (p *Portal) federationLink(w http.ResponseWriter, r *http.Request, c federation.Config, id *federation.Identity, pend *federation.Pending) {
	ctx := r.Context()
	_, sess, u := p.current(r)
	if sess == nil || u.Name != pend.User {
		p.federationPage(w, r, http.StatusForbidden, "Not linked", "You are no longer signed in as the person who asked to link "+c.DisplayName+". Sign in and try again.", "")
		return
	}
	err := p.cfg.Links.Add(ctx, id, u.Name, p.cfg.Now())
	if errors.Is(err, federation.ErrLinkedElsewhere) {
		p.cfg.Logger.Info("identity not linked: it is linked to another user", zap.String("provider", c.Name), zap.String("user", u.Name), zap.String("remote_ip", p.cfg.ClientIP(r)))
		p.render(w, r, http.StatusConflict, "federation", &pageData{Title: "Not linked", Error: "This " + c.DisplayName + " identity is linked to another account here already.", Next: p.base + PathSettings})
		return
	} else if err != nil {
		p.cfg.Logger.Error("portal: linking an identity", zap.String("provider", c.Name), zap.Error(err))
		p.unavailable(w, r)
		return
	}
	p.cfg.Logger.Info("identity linked", zap.String("provider", c.Name), zap.String("user", u.Name), zap.String("remote_ip", p.cfg.ClientIP(r)))
	p.notifyEvent(ctx, r, u, c.DisplayName+" was linked to your account", "A "+c.DisplayName+" identity was linked to your account: it can now sign you in. If you did not do this, tell the people who run this service at once.")
	redirect(w, r, p.base+PathSettings+"?notice=identity-linked")
}

// unlink removes a link of the signed-in person (POST, in an elevated session).
func (p *Portal) unlink(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	_, _, u, ok := p.deviceChange(w, r, PathSettings, p.cfg.Links != nil)
	if !ok {
		return
	}
	provider, subject := r.PostFormValue("provider"), r.PostFormValue("subject")
	removed, err := p.cfg.Links.Remove(ctx, u.Name, provider, subject)
	if err != nil {
		p.cfg.Logger.Error("portal: unlinking an identity", zap.Error(err))
		p.unavailable(w, r)
		return
	}
	if removed {
		p.cfg.Logger.Info("identity unlinked", zap.String("provider", provider), zap.String("user", u.Name), zap.String("remote_ip", p.cfg.ClientIP(r)))
		name := provider
		if fp := p.provider(provider); fp != nil {
			name = fp.Config().DisplayName
		}
		p.notifyEvent(ctx, r, u, name+" was unlinked from your account", "A "+name+" identity was unlinked from your account: it no longer signs you in.")
	}
	redirect(w, r, p.base+PathSettings+"?notice=identity-unlinked")
}

// logFederation prints each provider's redirect URI at start, to register at the upstream.
func (p *Portal) logFederation() {
	for _, fp := range p.cfg.IdentityProviders {
		u, _ := url.Parse(fp.RedirectURL())
		p.cfg.Logger.Info("identity provider ready: register this redirect URI at the upstream", zap.String("provider", fp.Config().Name), zap.Stringer("redirect_uri", u))
	}
}
