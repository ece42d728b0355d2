package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// Paths of the authorization endpoint and the consent form, relative to the issuer.
const (
	PathAuthorization      = "/api/oidc/authorization"
	PathAuthorizationAlias = "/api/oidc/authorize"
	PathConsent            = "/api/oidc/consent"
)

// flowLifetime is how long an authorization request may wait for its user to sign in, add a
// second factor and consent.
const flowLifetime = 30 * time.Minute

// AuthorizeRequest is a validated authorization request, fresh or resumed after the user signed
// in. Its fields are read-only.
type AuthorizeRequest struct {
	ar fosite.AuthorizeRequester
	// Client is the registered client.
	Client *clients.Client
	// FlowID names the request while the browser visits the portal; "" until saved.
	FlowID  string
	pushed  bool   // came through the PAR endpoint
	binding string // the browser the request is tied to while it waits (see SaveFlow)
}

// exactRedirect reports whether ar's redirect URI is one client registered, string for string
// (fosite lets a loopback redirect URI change its port; Portcullis does not): as sent, or the
// client's only one when the request names none.
func exactRedirect(ar fosite.AuthorizeRequester, client *clients.Client) bool {
	raw := ar.GetRequestForm().Get("redirect_uri")
	if raw == "" {
		return len(client.GetRedirectURIs()) == 1
	}
	return slices.Contains(client.GetRedirectURIs(), raw)
}

// parPrefix starts the request_uri of a pushed request.
const parPrefix = "urn:ietf:params:oauth:request_uri:"

// flowRecord is an authorization request kept while its user signs in or consents.
type flowRecord struct {
	Form        url.Values `json:"form"`
	RequestedAt time.Time  `json:"requested_at"`
	// Pushed marks a request that came through the PAR endpoint (its request_uri is spent;
	// Form holds the pushed parameters).
	Pushed bool `json:"pushed,omitempty"`
	// Binding ties the request to the browser that began it (a value only that browser
	// presents, such as a MAC of its CSRF cookie).
	Binding string `json:"binding,omitempty"`
}

func flowKey(id string) []byte { return []byte("flow/" + id) }

// Scopes are the scopes the client asked for (already checked against its registration).
func (a *AuthorizeRequest) Scopes() []string { return a.ar.GetRequestedScopes() }

// Audience is the audience the client asked for (already checked against its registration).
func (a *AuthorizeRequest) Audience() []string { return a.ar.GetRequestedAudience() }

// RequestedAt is when the request first arrived.
func (a *AuthorizeRequest) RequestedAt() time.Time { return a.ar.GetRequestedAt() }

// Prompt reports whether the request's prompt parameter holds value ("none", "login",
// "consent").
func (a *AuthorizeRequest) Prompt(value string) bool {
	return slices.Contains(strings.Fields(a.ar.GetRequestForm().Get("prompt")), value)
}

// MaxAge is the max_age parameter, and whether one was given.
func (a *AuthorizeRequest) MaxAge() (time.Duration, bool) {
	v := a.ar.GetRequestForm().Get("max_age")
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// OpenID reports a request for the openid scope.
func (a *AuthorizeRequest) OpenID() bool { return slices.Contains(a.Scopes(), "openid") }

// NewAuthorizeRequest validates an authorization request (RFC 6749 §4.1.1, OpenID Connect Core
// §3.1.2.1): the client, its exactly-registered redirect_uri, response type and mode, scopes,
// audience, state, and the client's own PKCE rules. A request carrying "flow" resumes a saved
// one, validated again against the client's current registration. The error is written with
// WriteAuthorizeError; a is nil or has a redirect URI that is not to be trusted unless
// RedirectValid says so.
func (p *Provider) NewAuthorizeRequest(ctx context.Context, r *http.Request, binding string) (*AuthorizeRequest, error) {
	var requestedAt time.Time
	var flowID string
	pushed := false
	if ct := r.Header.Get("Content-Type"); r.Method == http.MethodPost && ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		// OpenID Connect Core §3.1.2.1: GET, or POST with a form-encoded body; a multipart body
		// would be read by fosite alone, past the exact redirect_uri check
		return nil, fosite.ErrInvalidRequest.WithHint("An authorization request sent by POST must be application/x-www-form-urlencoded.")
	}
	if err := r.ParseForm(); err != nil {
		return nil, fosite.ErrInvalidRequest.WithHint("The request's parameters cannot be read.")
	}
	if id := r.Form.Get("flow"); id != "" && len(r.Form) == 1 {
		rec, err := p.loadFlow(ctx, id)
		if err != nil {
			return nil, err
		}
		if subtle.ConstantTimeCompare([]byte(rec.Binding), []byte(binding)) != 1 {
			// a flow resumes only in the browser that began it: a leaked flow id cannot hand
			// another person's sign-in to the application waiting for this one
			return nil, errFlowExpired
		}
		u := &url.URL{Path: r.URL.Path, RawQuery: rec.Form.Encode()}
		resumed, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, fosite.ErrInvalidRequest.WithHint("The saved authorization request cannot be read.")
		}
		resumed.Header = r.Header.Clone()
		resumed.Header.Del("Content-Type")
		resumed.Header.Del("Content-Length")
		r, requestedAt, flowID, pushed = resumed, rec.RequestedAt, id, rec.Pushed
	} else if uri := r.Form.Get("request_uri"); strings.HasPrefix(uri, parPrefix) {
		pushed = true
		// fosite spends a pushed request before it compares the client: check first, so that
		// another client's request_uri cannot be burnt
		if pr, err := p.storage.GetPARSession(ctx, uri); err == nil && pr.GetClient().GetID() != r.Form.Get("client_id") {
			return nil, fosite.ErrInvalidRequest.WithHint("The client_id must be the one that pushed the request.")
		}
	}
	// a request object's parameters replace the query's (RFC 9101), before anything reads them
	form, err := p.applyRequestObject(ctx, r.Form, r.Form.Get("client_id"), nil)
	if err != nil {
		return nil, err
	}
	r.Form = form
	// exact redirect_uri matching: fosite would let a loopback redirect change its port
	if c, ok := p.cfg.Clients(r.Form.Get("client_id")); ok {
		if ru := r.Form.Get("redirect_uri"); ru != "" && !slices.Contains(c.GetRedirectURIs(), ru) {
			return nil, fosite.ErrInvalidRequest.WithHint("The redirect_uri is not one the client registered.")
		}
	}
	ar, err := p.oauth2.NewAuthorizeRequest(ctx, r)
	if err != nil {
		// fosite checks the client and its redirect URI first: a later mistake (a response
		// type, mode, scope or audience the client may not ask for, a short state) goes back to
		// that redirect URI (RFC 6749 §4.1.2.1), which RedirectValid allows only with the client
		a := &AuthorizeRequest{ar: ar}
		if ar != nil {
			a.Client, _ = ar.GetClient().(*clients.Client)
		}
		return a, err
	}
	client, ok := ar.GetClient().(*clients.Client)
	if !ok {
		return nil, fosite.ErrInvalidClient
	}
	if !exactRedirect(ar, client) {
		return nil, fosite.ErrInvalidRequest.WithHint("The redirect_uri is not one the client registered.")
	}
	a := &AuthorizeRequest{ar: ar, Client: client, FlowID: flowID, pushed: pushed, binding: binding}
	if !requestedAt.IsZero() {
		if req, ok := ar.(*fosite.AuthorizeRequest); ok {
			req.RequestedAt = requestedAt
		}
	}
	if err := checkJARMMode(ar); err != nil {
		return a, err
	}
	if (client.RequirePAR() || p.cfg.RequirePAR) && !pushed {
		return a, fosite.ErrInvalidRequest.WithHint("This client must use a pushed authorization request.")
	}
	if ar.GetResponseTypes().Has("code") {
		challenge, method := ar.GetRequestForm().Get("code_challenge"), ar.GetRequestForm().Get("code_challenge_method")
		// what fosite would only refuse after the person signed in and consented
		switch {
		case method != "" && method != "S256" && method != "plain":
			return a, fosite.ErrInvalidRequest.WithHintf("The code_challenge_method %q is not supported; use S256.", method)
		case (method == "plain" || (method == "" && challenge != "")) && !p.cfg.EnablePKCEPlain:
			return a, fosite.ErrInvalidRequest.WithHint("The plain PKCE method is not enabled; use S256.")
		}
		if client.RequirePKCE() && challenge == "" {
			return a, fosite.ErrInvalidRequest.WithHint("This client must send a PKCE code_challenge.")
		}
		if want := client.PKCEChallengeMethod(); want != "" && challenge != "" && method != want && !(method == "" && want == "plain") {
			return a, fosite.ErrInvalidRequest.WithHintf("This client must use the PKCE code_challenge_method %s.", want)
		}
	}
	return a, nil
}

// loadFlow reads a saved authorization request.
func (p *Provider) loadFlow(ctx context.Context, id string) (*flowRecord, error) {
	if len(id) > 64 {
		return nil, errFlowExpired
	}
	data, err := p.cfg.KV.Get(ctx, flowKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errFlowExpired
	} else if err != nil {
		return nil, err
	}
	var rec flowRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("decoding an authorization flow: %w", err)
	}
	return &rec, nil
}

// errFlowExpired is a saved request that is unknown or past its lifetime; there is no client to
// send the browser back to.
var errFlowExpired = fosite.ErrInvalidRequest.WithHint("This sign-in request has expired or was already used; start again from the application.")

// SaveFlow keeps the request while its user visits the portal and returns its id (the same id
// when it was saved before).
func (p *Provider) SaveFlow(ctx context.Context, a *AuthorizeRequest) (string, error) {
	if a.FlowID != "" {
		return a.FlowID, nil
	}
	id := rand.Text()
	form := url.Values{}
	for k, v := range a.ar.GetRequestForm() {
		// a pushed request's request_uri is spent: the form holds what it pushed
		if k != "flow" && k != "request_uri" && !slices.Contains(parCredentials, k) {
			form[k] = v
		}
	}
	data, err := json.Marshal(flowRecord{Form: form, RequestedAt: a.ar.GetRequestedAt(), Pushed: a.pushed, Binding: a.binding})
	if err != nil {
		return "", err
	}
	if err := p.cfg.KV.Put(ctx, store.Entry{Key: flowKey(id), Value: data, TTL: flowLifetime}); err != nil {
		return "", err
	}
	a.FlowID = id
	return id, nil
}

// FlowURL is the absolute URL that resumes a saved request.
func (p *Provider) FlowURL(id string) string {
	return p.cfg.Issuer + PathAuthorization + "?flow=" + url.QueryEscape(id)
}

// Grant is what the user (and the provider's policy) granted a client.
type Grant struct {
	// Username is the user's name; Subject their sub for this client.
	Username, Subject string
	// AuthTime is when the user last authenticated.
	AuthTime time.Time
	// AMR are the RFC 8176 authentication methods of the sign-in.
	AMR []string
	// TwoFactor marks a sign-in with a second factor.
	TwoFactor bool
	// Scopes and Audience are granted (a subset of those requested).
	Scopes, Audience []string
	// Claims are the user's claims for the granted scopes.
	Claims map[string]any
	// BrowserSession identifies the portal session (a hash, not the cookie).
	BrowserSession string
}

// Authorize answers the request with the client's code (and tokens for the hybrid and implicit
// types), in its response mode, with the iss parameter of RFC 9207.
func (p *Provider) Authorize(ctx context.Context, w http.ResponseWriter, a *AuthorizeRequest, g Grant) {
	for _, s := range g.Scopes {
		a.ar.GrantScope(s)
	}
	for _, aud := range g.Audience {
		a.ar.GrantAudience(aud)
	}
	alg, kid := a.Client.IDTokenSigning()
	sess := &Session{
		Subject:        g.Subject,
		Username:       g.Username,
		TwoFactor:      g.TwoFactor,
		BrowserSession: g.BrowserSession,
	}
	claims := sess.IDTokenClaims()
	claims.Subject = g.Subject
	claims.Issuer = p.cfg.Issuer
	claims.AuthTime = g.AuthTime.UTC().Truncate(time.Second)
	// both in whole seconds, as the ID token carries them, for fosite's prompt and max_age
	// checks; the decision to ask for a sign-in compared the exact times
	claims.RequestedAt = a.ar.GetRequestedAt().UTC().Truncate(time.Second)
	claims.AuthenticationMethodsReferences = g.AMR
	claims.JTI = uuid.New().String()
	claims.Extra = p.idTokenExtra(a.Client, g.Claims)
	headers := sess.IDTokenHeaders()
	headers.Extra["alg"] = alg
	if k, err := p.signer.key(kid, alg); err == nil {
		headers.Extra["kid"] = k.ID
		headers.Extra["alg"] = k.Algorithm
	}
	resp, err := p.oauth2.NewAuthorizeResponse(ctx, a.ar, sess)
	if err != nil {
		p.WriteAuthorizeError(ctx, w, a, err)
		return
	}
	resp.AddParameter("iss", p.cfg.Issuer)
	if a.ar.GetResponseMode() == fosite.ResponseModeFormPost {
		w.Header().Set("Content-Security-Policy", formPostCSP)
	}
	p.endFlow(ctx, a)
	p.oauth2.WriteAuthorizeResponse(ctx, w, a.ar, resp)
	p.cfg.Logger.Info("authorization granted",
		zap.String("client_id", a.Client.ID()), zap.String("user", g.Username),
		zap.Strings("scopes", g.Scopes))
}

// idTokenExtra are the claims an ID token of client carries beside the standard ones: the
// claims of the granted scopes, or those of its claims policy.
func (p *Provider) idTokenExtra(c fosite.Client, userClaims map[string]any) map[string]any {
	extra := map[string]any{"azp": c.GetID()}
	var allowed []string
	limited := false
	if cc, ok := c.(*clients.Client); ok && cc.ClaimsPolicy() != "" {
		allowed, limited = p.cfg.ClaimsPolicies[cc.ClaimsPolicy()]
	}
	for k, v := range userClaims {
		if !limited || slices.Contains(allowed, k) {
			extra[k] = v
		}
	}
	return extra
}

func (p *Provider) endFlow(ctx context.Context, a *AuthorizeRequest) {
	if a.FlowID != "" {
		_ = p.cfg.KV.Delete(ctx, flowKey(a.FlowID))
	}
}

// RedirectOrigins is the origin of the request's redirect URI (where the answer goes), for a
// page's form-action.
func (a *AuthorizeRequest) RedirectOrigins() []string {
	if !a.RedirectValid() {
		return nil
	}
	return originOf(a.ar.GetRedirectURI())
}

// FlowRedirectOrigins is the origin of the redirect URI of the saved request that rd (a URL at
// the issuer) resumes, or nil: a portal page whose form returns to rd may end up there.
func (p *Provider) FlowRedirectOrigins(ctx context.Context, rd string) []string {
	u, err := url.Parse(rd)
	if err != nil || !strings.HasPrefix(rd, p.cfg.Issuer+PathAuthorization+"?") {
		return nil
	}
	rec, err := p.loadFlow(ctx, u.Query().Get("flow"))
	if err != nil {
		return nil
	}
	c, ok := p.cfg.Clients(rec.Form.Get("client_id"))
	if !ok {
		return nil
	}
	ru := rec.Form.Get("redirect_uri")
	if ru == "" && len(c.GetRedirectURIs()) == 1 {
		ru = c.GetRedirectURIs()[0]
	}
	if !slices.Contains(c.GetRedirectURIs(), ru) {
		return nil
	}
	r, err := url.Parse(ru)
	if err != nil {
		return nil
	}
	return originOf(r)
}

// originOf is scheme://host[:port] of u, as a CSP source.
func originOf(u *url.URL) []string {
	if u == nil || u.Scheme == "" || u.Host == "" {
		return nil
	}
	return []string{u.Scheme + "://" + u.Host}
}

// RedirectValid reports whether errors about a may be sent to its client's redirect URI.
func (a *AuthorizeRequest) RedirectValid() bool {
	return a != nil && a.ar != nil && a.Client != nil && a.ar.IsRedirectURIValid() && exactRedirect(a.ar, a.Client)
}

// WriteAuthorizeError sends err to the client's redirect URI in the request's response mode,
// with state and iss. It must only be called when RedirectValid; otherwise the caller shows
// the error to the person (never a redirect to an unverified URI).
func (p *Provider) WriteAuthorizeError(ctx context.Context, w http.ResponseWriter, a *AuthorizeRequest, err error) {
	rfc := rfcError(err)
	if rfc.CodeField >= 500 {
		p.cfg.Logger.Error("authorization failed", zap.String("client_id", a.Client.ID()), zap.String("debug", rfc.GetDescription()+" "+rfc.DebugField))
		rfc = fosite.ErrServerError.WithHint("The provider failed to handle the request; see its log.")
	}
	p.endFlow(ctx, a)
	params := url.Values{}
	params.Set("error", rfc.ErrorField)
	if d := rfc.GetDescription(); d != "" {
		params.Set("error_description", d)
	}
	if s := a.ar.GetState(); s != "" {
		params.Set("state", s)
	}
	params.Set("iss", p.cfg.Issuer)
	if isJARM(a.ar.GetResponseMode()) {
		p.writeJARM(ctx, w, a.ar, params)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	redirectURI := *a.ar.GetRedirectURI()
	redirectURI.Fragment = ""
	switch a.ar.GetResponseMode() {
	case fosite.ResponseModeFormPost:
		w.Header().Set("Content-Type", "text/html;charset=UTF-8")
		w.Header().Set("Content-Security-Policy", formPostCSP)
		fosite.WriteAuthorizeFormPostResponse(redirectURI.String(), params, formPostTemplate, w)
		return
	case fosite.ResponseModeFragment:
		w.Header().Set("Location", redirectURI.String()+"#"+params.Encode())
	default:
		q := redirectURI.Query()
		for k, v := range params {
			q[k] = v
		}
		redirectURI.RawQuery = q.Encode()
		w.Header().Set("Location", redirectURI.String())
	}
	w.WriteHeader(http.StatusSeeOther)
}

// formPostScript submits the form_post response; formPostCSP allows exactly that script.
const formPostScript = `document.forms[0].submit()`

var formPostCSP = "default-src 'none'; script-src '" + scriptHash(formPostScript) + "'; style-src 'unsafe-inline'; form-action *; frame-ancestors 'none'; base-uri 'none'"

// formPostTemplate is the form_post response (OAuth 2.0 Form Post Response Mode): a form that
// submits itself, with a button when scripts are off.
var formPostTemplate = template.Must(template.New("form_post").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Signing you in…</title></head>
<body style="font-family:system-ui,sans-serif;text-align:center;margin-top:20vh">
<form method="post" action="{{ .RedirURL }}">
{{ range $key, $value := .Parameters }}{{ range $value }}<input type="hidden" name="{{ $key }}" value="{{ . }}">
{{ end }}{{ end }}<noscript><p>Scripts are off: continue to the application.</p><button type="submit">Continue</button></noscript>
</form>
<script>` + formPostScript + `</script>
</body></html>
`))

// scriptHash is a CSP source for an inline script's exact text.
func scriptHash(script string) string {
	h := sha256.Sum256([]byte(script))
	return "sha256-" + base64.StdEncoding.EncodeToString(h[:])
}
