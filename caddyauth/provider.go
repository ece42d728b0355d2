package caddyauth

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddyauthstd "github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"

	"github.com/portcullis-auth/portcullis/accesscontrol"
)

func init() {
	caddy.RegisterModule(Provider{})
}

// Provider is http.authentication.providers.oidc, for Caddy's stock authentication handler. It
// runs oidc_auth's code (identification, rules, and the answer's headers), within that handler's
// limits: it can only accept a caller or not, and the handler then answers 401, so it sets the
// headers oidc_auth would answer with (the challenge, Proxy-Authenticate for Proxy-Authorization,
// the portal's Location) but never answers 302, 403 or 407 itself (only 503, for a store that
// cannot answer). A bypass rule admits every
// caller, without identification. Prefer the oidc_auth directive.
//
// It must be the handler's only provider: the stock handler tries its providers in random order
// and stops at the first that accepts, so beside another provider (http_basic, say) this one
// would not run on every request, and the caller's own Remote-* headers would reach the upstream.
// Such a config is refused when it loads.
//
// It is configured in JSON only, as Caddy's Caddyfile has no directive for the stock
// authentication handler: {"handler":"authentication","providers":{"oidc":{"rules":[…]}}}, with
// GateConfig's fields.
type Provider struct {
	GateConfig

	gate *gate
}

// CaddyModule returns the Caddy module information.
func (Provider) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.authentication.providers.oidc", New: func() caddy.Module { return new(Provider) }}
}

// Provision refuses a stock authentication handler with other providers beside this one, and
// compiles the rules against the oidc app.
func (p *Provider) Provision(ctx caddy.Context) error {
	if err := checkAlone(ctx); err != nil {
		return err
	}
	g, err := p.GateConfig.provision(ctx)
	if err != nil {
		return err
	}
	p.gate = g
	return nil
}

// checkAlone refuses a parent authentication handler (the module provisioning this provider,
// just before it in the context's ancestry) that has providers besides oidc: the handler stops
// at the first provider that accepts, in random order, so one that accepts before ours would let
// the caller's Remote-* headers through.
func checkAlone(ctx caddy.Context) error {
	mods := ctx.Modules()
	if len(mods) < 2 {
		return nil
	}
	parent, ok := mods[len(mods)-2].(*caddyauthstd.Authentication)
	if !ok {
		return nil
	}
	var others []string
	for name := range parent.ProvidersRaw {
		if name != "oidc" {
			others = append(others, name)
		}
	}
	if len(others) == 0 {
		return nil
	}
	slices.Sort(others)
	return fmt.Errorf("the authentication handler has providers besides oidc (%s): it stops at the first provider that accepts, in random order, "+
		"so the oidc provider would not run on every request and callers' Remote-* headers could reach the upstream; "+
		"use the oidc_auth directive, or put oidc alone in an authentication handler (another provider goes in a handler of its own, "+
		"with a request_header handler before it that removes the Remote-* request headers)",
		strings.Join(others, ", "))
}

// Authenticate implements caddyauth.Authenticator with oidc_auth's answer path: it sets the
// headers oidc_auth would answer with (the stock handler then answers 401). It returns an error
// only for technical failures, never for bad credentials; when the store cannot answer (not
// open, or its database unreachable) it answers 503 with Retry-After itself, as oidc_auth does,
// rather than let the handler's 401 call unchecked credentials wrong.
func (p *Provider) Authenticate(w http.ResponseWriter, r *http.Request) (caddyauthstd.User, bool, error) {
	o := p.gate.run(r)
	if !o.allowed() {
		status, err := p.gate.refuse(w, r, &o, false)
		if status == http.StatusServiceUnavailable {
			// the handler would answer 401, telling a caller whose credentials were never
			// checked that they are wrong; as this provider is the handler's only one, w is the
			// response itself: answer 503 (Retry-After is set) before the handler's 401, which
			// then writes nothing more
			w.WriteHeader(http.StatusServiceUnavailable)
			return caddyauthstd.User{}, false, err
		}
		if status >= http.StatusInternalServerError || status == statusClientGone {
			return caddyauthstd.User{}, false, err
		}
		return caddyauthstd.User{}, false, nil
	}
	p.gate.admit(r, &o)
	id := o.found.id
	if id == nil {
		return caddyauthstd.User{}, true, nil // a bypass rule
	}
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
)
