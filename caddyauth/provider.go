package caddyauth

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	caddyauthstd "github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
)

func init() {
	caddy.RegisterModule(Provider{})
}

// Provider is http.authentication.providers.oidc, for Caddy's stock authentication handler. It
// shares oidc_auth's identification and rules, within that handler's limits: it can only accept
// a caller or not (the handler then answers 401), so it sets the challenge header and never
// answers 302, 403 or 407 itself; a bypass rule admits every caller, without identification.
// Prefer the oidc_auth directive unless you compose several providers.
type Provider struct {
	GateConfig

	gate *gate
}

// CaddyModule returns the Caddy module information.
func (Provider) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.authentication.providers.oidc", New: func() caddy.Module { return new(Provider) }}
}

// Provision compiles the rules against the oidc app.
func (p *Provider) Provision(ctx caddy.Context) error {
	g, err := p.GateConfig.provision(ctx)
	if err != nil {
		return err
	}
	p.gate = g
	return nil
}

// UnmarshalCaddyfile reads the provider's options (strategies, rule) like oidc_auth's.
func (p *Provider) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return p.GateConfig.unmarshalCaddyfile(d, "oidc")
}

// Authenticate implements caddyauth.Authenticator. It returns an error only for technical
// failures (the store not open), never for bad credentials.
func (p *Provider) Authenticate(w http.ResponseWriter, r *http.Request) (caddyauthstd.User, bool, error) {
	stripRemoteHeaders(r)
	t, err := p.gate.requestTarget(r)
	if err != nil {
		// the stock handler can only refuse: 401
		host, _ := audience.SplitHost(r.Host)
		p.gate.app.GateDecided(p.gate.siteLabel(host), "none", "bad_request")
		return caddyauthstd.User{}, false, nil
	}
	site := p.gate.siteLabel(t.access.Host)
	anon := p.gate.engine.Decide(&t.access, nil)
	if anon.Policy == accesscontrol.Bypass {
		p.gate.countAllowed(site, anon.Policy)
		p.gate.stripSessionCookie(r)
		return caddyauthstd.User{}, true, nil
	}
	found, err := p.gate.identify(r, &t)
	if errors.Is(err, errSessionCookies) {
		p.gate.app.GateDecided(site, "none", "bad_request")
		return caddyauthstd.User{}, false, nil
	}
	if err != nil {
		p.gate.app.GateDecided(site, "none", "unavailable")
		if errors.Is(err, oidcprovider.ErrUnavailable) {
			w.Header().Set("Retry-After", "1")
		}
		return caddyauthstd.User{}, false, err
	}
	if found.failure != nil {
		p.gate.app.GateDecided(site, "none", "invalid_token")
		w.Header().Set("WWW-Authenticate", bearerChallenge("invalid_token", found.failure.description))
		return caddyauthstd.User{}, false, nil
	}
	id := found.id
	if id == nil {
		if found.foreign != nil {
			p.gate.app.GateDecided(site, "none", "invalid_token")
			w.Header().Set("WWW-Authenticate", bearerChallenge("invalid_token", foreignTokenDescription))
		} else {
			p.gate.app.GateDecided(site, "none", "unauthorized")
			w.Header().Set("WWW-Authenticate", bearerChallenge("", ""))
		}
		return caddyauthstd.User{}, false, nil
	}
	v, d := p.gate.decide(&t.access, &found, anon)
	if v != verdictAllow {
		p.gate.app.GateDecided(site, d.Policy.String(), "forbidden")
		w.Header().Set("WWW-Authenticate", bearerChallenge("insufficient_scope", "The rule for this URL does not admit this token."))
		return caddyauthstd.User{}, false, nil
	}
	p.gate.app.GateDecided(site, d.Policy.String(), "allow")
	applyIdentity(r, id)
	p.gate.stripSessionCookie(r)
	user := caddyauthstd.User{Metadata: map[string]string{"auth_level": "one_factor"}}
	if id.level == accesscontrol.TwoFactor {
		user.Metadata["auth_level"] = "two_factor"
	}
	if id.subject.ClientID != "" {
		user.ID = "oauth2:client:" + id.subject.ClientID
		user.Metadata["client_id"] = id.subject.ClientID
	} else {
		user.ID = id.subject.Username
	}
	return user, true, nil
}

var (
	_ caddy.Provisioner          = (*Provider)(nil)
	_ caddyauthstd.Authenticator = (*Provider)(nil)
	_ caddyfile.Unmarshaler      = (*Provider)(nil)
)
