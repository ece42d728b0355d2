package oidcprovider

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/ory/fosite"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("oidc_provider", parseHandlerCaddyfile)
	httpcaddyfile.RegisterGlobalOption(AppName, parseGlobalOption)
}

// Endpoint paths, relative to the issuer. Authelia's paths first; the seeds' older ones are aliases.
const (
	PathDiscoveryOIDC   = "/.well-known/openid-configuration"
	PathDiscoveryOAuth  = "/.well-known/oauth-authorization-server"
	PathJWKS            = "/jwks.json"
	PathJWKSAlias       = "/api/oidc/jwks"
	PathToken           = "/api/oidc/token"
	PathIntrospection   = "/api/oidc/introspection"
	PathIntrospectAlias = "/api/oidc/introspect"
	PathRevocation      = "/api/oidc/revocation"
	PathRevokeAlias     = "/api/oidc/revoke"
)

// maxFormBytes bounds the body of a protocol request.
const maxFormBytes = 64 << 10

// Handler serves the provider's endpoints (discovery, JWKS, token, introspection, revocation) on
// the site it is placed in, and passes every other request to the next handler. Use it with the
// oidc_provider Caddyfile directive on the issuer's site.
type Handler struct {
	app    *App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.oidc_provider", New: func() caddy.Module { return new(Handler) }}
}

// NewHandler returns a provider handler for an app that is already provisioned, for embedding
// the endpoints outside a Caddy config (tests, tools).
func NewHandler(app *App, logger *zap.Logger) *Handler {
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Handler{app: app, logger: logger}
}

// Provision finds the oidc app.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	app, err := ctx.AppIfConfigured(AppName)
	if errors.Is(err, caddy.ErrNotConfigured) {
		return errors.New("oidc_provider: the global 'oidc' option is missing; add '{ oidc { issuer https://auth.example.com } }' at the top of the Caddyfile")
	} else if err != nil {
		return fmt.Errorf("oidc_provider: %w", err)
	}
	h.app = app.(*App)
	return nil
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
	var serve func(http.ResponseWriter, *http.Request, *runtimeState)
	switch p {
	case PathDiscoveryOIDC, PathDiscoveryOAuth:
		serve = h.serveDiscovery
	case PathJWKS, PathJWKSAlias:
		serve = h.serveJWKS
	case PathToken:
		serve = h.serveToken
	case PathIntrospection, PathIntrospectAlias:
		serve = h.serveIntrospection
	case PathRevocation, PathRevokeAlias:
		serve = h.serveRevocation
	default:
		return next.ServeHTTP(w, r)
	}
	st := h.app.running()
	if st == nil {
		writeUnavailable(w)
		return nil
	}
	serve(w, r, st)
	return nil
}

// writeUnavailable answers while the store is not open (start-up, reload, shutdown).
func writeUnavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(`{"error":"temporarily_unavailable","error_description":"The provider is starting or reloading; retry shortly."}`))
}

// writeJSON writes v as a JSON response (Content-Type application/json unless already set).
func writeJSON(w http.ResponseWriter, status int, v any) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeOAuthError writes an RFC 6749 §5.2 error. A closed store is a 503, never a 500.
func (h *Handler) writeOAuthError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, store.ErrClosed) {
		writeUnavailable(w)
		return
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= 500 {
		h.logger.Error("oidc endpoint failed", zap.String("path", r.URL.Path), zap.Error(errors.Unwrap(err)), zap.String("debug", rfc.DebugField))
		rfc = fosite.ErrServerError.WithHint("The provider failed to handle the request; see its log.")
	} else if c := h.logger.Check(zapcore.DebugLevel, "oidc request refused"); c != nil {
		c.Write(zap.String("path", r.URL.Path), zap.String("error", rfc.ErrorField), zap.String("description", rfc.GetDescription()))
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	if rfc.ErrorField == fosite.ErrInvalidClient.ErrorField {
		rfc.CodeField = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Basic realm="`+h.app.issuer+`"`)
	}
	writeJSON(w, rfc.CodeField, struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{rfc.ErrorField, rfc.GetDescription()})
}

// parseForm reads a bounded POST form.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return fosite.ErrInvalidRequest.WithHintf("HTTP method is '%s'; this endpoint accepts POST.", r.Method)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return fosite.ErrInvalidRequest.WithHint("The body must be an application/x-www-form-urlencoded form of at most 64 KiB.")
	}
	return nil
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
