package caddyauth

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
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
// rules carry no subjects), the request goes on before any credential is read: nothing is
// checked, counted or logged, and the upstream gets the credentials as sent.
//
// Before anything else it removes every request header and trailer named Remote-*, Remote_* or
// Remote.*, and those names from the Connection header (reverse_proxy drops the headers that
// Connection names, which would take away the identity headers the gate sets). For an allowed caller it sets Remote-Client-Id (clients) or Remote-User (users) and
// these placeholders:
//
//	{http.auth.user.id}         oauth2:client:<id> for a client, the username for a user
//	{http.auth.user.client_id}  the OAuth 2.0 client id, when there is one
//	{http.auth.user.auth_level} one_factor or two_factor
//	{http.auth.user.scopes}     the token's scopes, space-separated
//
// 400, 401, 403, 407, 421 and 503 are returned as handler errors, so handle_errors can shape them.
type Handler struct {
	GateConfig

	gate   *gate
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.oidc_auth", New: func() caddy.Module { return new(Handler) }}
}

// Provision compiles the site's rules against the oidc app.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	g, err := h.GateConfig.provision(ctx)
	if err != nil {
		return err
	}
	h.gate = g
	return nil
}

// ServeHTTP gates the request and counts the decision in the oidc app's metrics.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	stripRemoteHeaders(r)
	t, err := h.gate.requestTarget(r)
	if err != nil {
		host, _ := audience.SplitHost(r.Host)
		if errors.Is(err, errMisdirected) {
			h.gate.app.GateDecided(h.gate.siteLabel(host), "none", "misdirected")
			return caddyhttp.Error(http.StatusMisdirectedRequest, err)
		}
		h.gate.app.GateDecided(h.gate.siteLabel(host), "none", "bad_request")
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	site := h.gate.siteLabel(t.access.Host)
	anon := h.gate.engine.Decide(&t.access, nil)
	if anon.Policy == accesscontrol.Bypass {
		// bypass rules carry no subjects: every caller gets this rule, so no credential is
		// checked, counted or logged, and the upstream gets them as sent
		h.gate.countAllowed(site, anon.Policy)
		h.gate.stripSessionCookie(r)
		return next.ServeHTTP(w, r)
	}
	found, err := h.gate.identify(r, &t)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// the client left while its credentials were checked: nobody to answer, and no
		// server error to log (499, as Caddy's reverse proxy says it)
		return caddyhttp.Error(499, err)
	}
	if errors.Is(err, errSessionCookies) {
		h.gate.app.GateDecided(site, "none", "bad_request")
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	if err != nil {
		h.gate.app.GateDecided(site, "none", "unavailable")
		if errors.Is(err, oidcprovider.ErrUnavailable) {
			w.Header().Set("Retry-After", "1")
			return caddyhttp.Error(http.StatusServiceUnavailable, err)
		}
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("checking credentials: %w", err))
	}
	v, d := h.gate.decide(&t.access, &found, anon)
	id := found.id
	if c := h.logger.Check(zapcore.DebugLevel, "access decision"); c != nil {
		c.Write(zap.String("host", t.access.Host), zap.String("rule", h.gate.engine.RuleName(d.Rule)), zap.Stringer("policy", d.Policy), zap.Bool("authenticated", id != nil))
	}
	policy := d.Policy.String()
	switch v {
	case verdictAllow:
		h.gate.countAllowed(site, d.Policy)
		if id != nil {
			applyIdentity(r, id)
		}
		h.gate.stripSessionCookie(r)
		return next.ServeHTTP(w, r)
	case verdictInvalid:
		h.gate.app.GateDecided(site, policy, "invalid_token")
		f := found.failure
		if f.basic {
			w.Header().Set(f.strategy.challenge, `Basic realm="`+realm+`", charset="UTF-8"`)
			return caddyhttp.Error(f.strategy.status, errors.New("invalid credentials: "+f.description))
		}
		w.Header().Set(f.strategy.challenge, bearerChallenge("invalid_token", f.description))
		return caddyhttp.Error(f.strategy.status, errors.New("invalid credentials: "+f.description))
	case verdictForbidden:
		h.gate.app.GateDecided(site, policy, "forbidden")
		if id.user == nil {
			w.Header().Set(id.strategy.challenge, bearerChallenge("insufficient_scope", "The rule for this URL asks more than this token can prove ("+d.Policy.String()+")."))
		}
		return caddyhttp.Error(http.StatusForbidden, fmt.Errorf("forbidden by %s", h.gate.engine.RuleName(d.Rule)))
	case verdictDeny:
		h.gate.app.GateDecided(site, policy, "forbidden")
		return caddyhttp.Error(http.StatusForbidden, fmt.Errorf("denied by %s", h.gate.engine.RuleName(d.Rule)))
	}
	// Anonymous: browsers go to the portal; API clients get 401 with the same Location. A
	// one-factor session on a two_factor rule goes to the second-factor page the same way.
	loc := h.gate.portalURL(&t)
	if v == verdictStepUp {
		loc = h.gate.app.SecondFactorURL(t.url(), t.method)
	}
	w.Header().Set("Location", loc)
	if isBrowser(r) {
		h.gate.app.GateDecided(site, policy, "redirect")
		status := http.StatusFound
		if t.method != http.MethodGet && t.method != http.MethodHead && t.method != http.MethodOptions {
			status = http.StatusSeeOther
		}
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodHead {
			w.WriteHeader(status)
			return nil
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, "<a href=\"%s\">%d %s</a>\n", html.EscapeString(loc), status, http.StatusText(status))
		return nil
	}
	h.gate.app.GateDecided(site, policy, "unauthorized")
	w.Header().Set("WWW-Authenticate", bearerChallenge("", ""))
	return caddyhttp.Error(http.StatusUnauthorized, errors.New("authentication required"))
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
