package caddyauth

import (
	"fmt"
	"html"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/portcullis-auth/portcullis/oidcprovider"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("oidc_auth", parseHandlerCaddyfile)
}

// Handler is the oidc_auth gate: it identifies the caller, applies the access-control rules and
// either passes the request on, with identity headers and placeholders, or answers it (401/407
// with an RFC 6750 challenge, 403, or a redirect to the login portal).
//
// It judges the URL the caller asked for: Caddy's original request (before rewrite or uri), with
// scheme and host from X-Forwarded-Proto/-Host only when Caddy trusts the peer as a proxy. A path
// with a "." or ".." segment (also percent-encoded or with a ";param" suffix), an encoded "/" or
// "\", a "\", a control character or invalid UTF-8 (also in a layer a second decoding would
// reveal) is refused with 400 before any check, so the rules, the audience check and the upstream
// see one target. A Host whose port another of this Caddy's servers listens on, while the request
// came in on another port, is refused with 421.
//
// When the first rule that can match the request, for any caller, is a bypass rule (bypass
// rules carry no subjects), the request goes on before any credential is checked: nothing is
// checked, counted or logged, and the upstream gets the credentials as sent, except Basic
// credentials whose username is a user of the users file (a lookup of the name alone), which are
// removed so the upstream never learns a Portcullis password.
//
// Before anything else it removes every request header and trailer named Remote-*, Remote_* or
// Remote.*, and those names from the Connection header (reverse_proxy drops the headers that
// Connection names, which would take away the identity headers the gate sets).
//
// For an allowed client (a client_credentials token) it sets Remote-Client-Id and these
// placeholders:
//
//	{http.auth.user.id}         oauth2:client:<id>
//	{http.auth.user.client_id}  the OAuth 2.0 client id
//	{http.auth.user.auth_level} one_factor
//	{http.auth.user.scopes}     the token's scopes, space-separated
//
// For an allowed person (Basic credentials, a session, or an access token issued to a user) it
// sets Remote-User, Remote-Groups (comma-separated, when they have groups), Remote-Email (the
// first address, when they have one) and Remote-Name, removes Basic credentials, and sets:
//
//	{http.auth.user.id}         the username
//	{http.auth.user.groups}     the groups, comma-separated
//	{http.auth.user.email}      the first email address, when there is one
//	{http.auth.user.auth_level} one_factor, or two_factor for a session or token that passed a second factor
//
// The session cookie never reaches the next handler. A bypass rule sets none of these.
//
// On a site under a further cookie domain (the oidc app's session cookies), a browser without a
// session there is sent to the portal's hand-off rather than its sign-in page, and the path
// /.portcullis/handoff (oidcprovider.HandoffPath) is the gate's own, before any rule: it
// redeems the portal's one-time code, sets the domain's session cookie and redirects on. It
// never reaches the next handler. On other sites the path is the upstream's.
//
// 400, 401, 403, 407, 421 and 503 are returned as handler errors, so handle_errors can shape them.
type Handler struct {
	GateConfig

	gate *gate
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.oidc_auth", New: func() caddy.Module { return new(Handler) }}
}

// Provision compiles the site's rules against the oidc app.
func (h *Handler) Provision(ctx caddy.Context) error {
	g, err := h.GateConfig.provision(ctx)
	if err != nil {
		return err
	}
	h.gate = g
	return nil
}

// ServeHTTP gates the request and counts the decision in the oidc app's metrics.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	o := h.gate.run(r)
	if o.handoff {
		return h.gate.serveHandoff(w, r, &o)
	}
	if o.allowed() {
		h.gate.admit(r, &o)
		return next.ServeHTTP(w, r)
	}
	status, err := h.gate.refuse(w, r, &o, true)
	if err != nil {
		return caddyhttp.Error(status, err)
	}
	// a browser sent to the portal
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return nil
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "<a href=\"%s\">%d %s</a>\n", html.EscapeString(w.Header().Get("Location")), status, http.StatusText(status))
	return nil
}

// UnmarshalCaddyfile reads the directive. Syntax:
//
//	oidc_auth [<matcher>] {
//		strategies authorization|proxy_authorization|session...
//		rule {
//			...
//		}
//	}
//
// Rules use the syntax of the global access_control rules and run before them.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return h.GateConfig.unmarshalCaddyfile(d, "oidc_auth")
}

func (c *GateConfig) unmarshalCaddyfile(d *caddyfile.Dispenser, directive string) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("%s takes no argument (got %q); put options in its block", directive, d.Val())
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "strategies":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("%s: strategies needs at least one of authorization, proxy_authorization, session", directive)
			}
			c.Strategies = append(c.Strategies, args...)
		case "rule":
			r, err := oidcprovider.UnmarshalRule(d)
			if err != nil {
				return err
			}
			c.Rules = append(c.Rules, r)
		default:
			return d.Errf("%s: unknown option %q (strategies, rule)", directive, opt)
		}
	}
	return nil
}

func parseHandlerCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m Handler
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return &m, err
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
