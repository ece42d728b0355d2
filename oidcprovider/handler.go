package oidcprovider

import (
	"errors"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("oidc_provider", parseHandlerCaddyfile)
	httpcaddyfile.RegisterGlobalOption(AppName, parseGlobalOption)
}

// Handler serves the provider's endpoints on the site it is placed in and passes every other
// request to the next handler. Use it with the oidc_provider Caddyfile directive on the issuer's
// site. Paths, relative to the issuer (the seeds' older paths are aliases):
//
//	/.well-known/openid-configuration        OpenID Connect discovery
//	/.well-known/oauth-authorization-server  OAuth 2.0 metadata (RFC 8414)
//	/jwks.json (/api/oidc/jwks)              JWKS
//	/api/oidc/token                          token endpoint
//	/api/oidc/introspection (…/introspect)   RFC 7662 introspection
//	/api/oidc/revocation (…/revoke)          RFC 7009 revocation
//	/api/oidc/userinfo                       OpenID Connect userinfo
//	/api/oidc/pushed-authorization-request   RFC 9126 pushed authorization requests
//	/api/oidc/device-authorization           RFC 8628 device authorization (with a users_file)
//
// With a users_file, the browser's side of the flows and the sign-in portal's pages too:
//
//	/api/oidc/authorization (…/authorize)    authorization endpoint (code flow)
//	/api/oidc/consent                        the consent answer
//	/api/oidc/logout                         RP-initiated logout
//	/device                                  the device authorization grant's page (user codes)
//
//	/                                        sign in (and the return URL rd)
//	/2fa                                     second factor: TOTP code, security key or passkey
//	/settings                                the signed-in page: devices, sign-out
//	/settings/totp, /settings/webauthn       adding a device
//	/logout                                  sign out
//	/assets/…                                the pages' stylesheet, script and logo
//
// While the store is not open (start-up, reload, shutdown) the endpoints answer 503 with
// Retry-After.
type Handler struct {
	app *App
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.oidc_provider", New: func() caddy.Module { return new(Handler) }}
}

// NewHandler returns a provider handler for an app that is already provisioned, for serving the
// endpoints outside a Caddy config (tests, tools).
func NewHandler(app *App) *Handler { return &Handler{app: app} }

// Provision finds the oidc app.
func (h *Handler) Provision(ctx caddy.Context) error {
	app, err := AppOf(ctx)
	if err != nil {
		return err
	}
	h.app = app
	return nil
}

// AppOf returns the config's oidc app, or an error saying how to add it: the provider's handler
// and the gateway's handlers find the app with it.
func AppOf(ctx caddy.Context) (*App, error) {
	app, err := ctx.AppIfConfigured(AppName)
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, errors.New("the global 'oidc' option is missing; add '{ oidc { issuer https://auth.example.com … } }' at the top of the Caddyfile")
	} else if err != nil {
		return nil, err
	}
	return app.(*App), nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	oidc_provider [<matcher>]
//
// The directive takes no options: the provider is configured by the global oidc option.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("oidc_provider takes no options (got %q); configure the provider in the global 'oidc' option", d.Val())
	}
	return nil
}

func parseHandlerCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var p Handler
	err := p.UnmarshalCaddyfile(h.Dispenser)
	return &p, err
}

// ServeHTTP routes provider endpoints and passes other requests on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	p := r.URL.Path
	if base := h.app.issuerURL.Path; base != "" {
		rest, ok := strings.CutPrefix(p, base)
		if !ok {
			return next.ServeHTTP(w, r)
		}
		p = rest
	}
	if h.app.cors.serve(w, r, p) {
		return nil // a CORS preflight, answered
	}
	var serve func(*oauth.Provider, http.ResponseWriter, *http.Request)
	switch p {
	case oauth.PathDiscoveryOIDC, oauth.PathDiscoveryOAuth:
		serve = (*oauth.Provider).ServeDiscovery
	case oauth.PathJWKS, oauth.PathJWKSAlias:
		serve = (*oauth.Provider).ServeJWKS
	case oauth.PathToken:
		serve = (*oauth.Provider).ServeToken
	case oauth.PathIntrospection, oauth.PathIntrospectAlias:
		serve = (*oauth.Provider).ServeIntrospection
	case oauth.PathRevocation, oauth.PathRevokeAlias:
		serve = (*oauth.Provider).ServeRevocation
	case oauth.PathUserinfo:
		serve = (*oauth.Provider).ServeUserinfo
	case oauth.PathPAR:
		serve = (*oauth.Provider).ServePAR
	case oauth.PathDeviceAuthorization:
		serve = (*oauth.Provider).ServeDeviceAuthorization
	case oauth.PathAuthorization, oauth.PathAuthorizationAlias, oauth.PathConsent, oauth.PathLogout, oauth.PathDevice:
		return h.app.servePeopleFlow(w, r, p, next)
	default:
		rel := p
		if rel == "" {
			rel = "/"
		}
		if h.app.servePortal(w, r, rel) {
			return nil
		}
		return next.ServeHTTP(w, r)
	}
	st := h.app.running()
	if st == nil {
		oauth.WriteUnavailable(w)
		return nil
	}
	serve(st.provider, w, r)
	return nil
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
