package oauth

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ory/fosite"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

// ServeToken is the token endpoint (RFC 6749 §3.2): the authorization_code, refresh_token,
// client_credentials and device_code (RFC 8628) grants.
func (p *Provider) ServeToken(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		p.refuseToken(w, r, err)
		return
	}
	for _, k := range []string{"scope", "grant_type", "code", "refresh_token", "redirect_uri", "code_verifier", "device_code"} {
		if len(r.PostForm[k]) > 1 {
			p.refuseToken(w, r, fosite.ErrInvalidRequest.WithHintf("The %s parameter is repeated.", k))
			return
		}
	}
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "":
		p.refuseToken(w, r, fosite.ErrInvalidRequest.WithHint("The grant_type parameter is missing."))
	case clients.GrantClientCredentials:
		p.serveClientCredentials(w, r)
	case grantAuthorizationCode, grantRefreshToken:
		if p.cfg.People == nil {
			p.refuseToken(w, r, fosite.ErrUnsupportedGrantType.WithHintf("The grant type '%s' needs a users_file.", gt))
			return
		}
		p.serveUserGrant(w, r, gt)
	case grantDeviceCode:
		if p.cfg.People == nil {
			p.refuseToken(w, r, fosite.ErrUnsupportedGrantType.WithHintf("The grant type '%s' needs a users_file.", gt))
			return
		}
		p.serveDeviceGrant(w, r)
	default:
		p.refuseToken(w, r, fosite.ErrUnsupportedGrantType.WithHintf("The grant type '%s' is not supported.", gt))
	}
}

// serveUserGrant exchanges a code, or a refresh token, for tokens.
func (p *Provider) serveUserGrant(w http.ResponseWriter, r *http.Request, grant string) {
	ctx := r.Context()
	// one exchange of a given code or refresh token at a time, so a replay racing the first
	// use finds it spent (and revokes its grant) instead of rotating it a second time
	if key := r.PostForm.Get("code") + r.PostForm.Get("refresh_token"); key != "" {
		// keyed by the store too: two stores in one process (two nodes in a test) lock apart
		defer grantLocks.lock(fmt.Sprintf("%p|%s", p.storage.kv, key))()
		if p.storage.shared { // and across the nodes of a shared store (grantclaim.go)
			release, err := p.storage.claimGrant(ctx, key)
			if err != nil {
				p.refuseToken(w, r, err)
				return
			}
			defer release()
		}
	}
	ar, err := p.oauth2.NewAccessRequest(ctx, r, &Session{})
	if errors.Is(err, fosite.ErrInactiveToken) {
		// RFC 6749 §5.2 has no token_inactive: a spent or revoked grant is invalid_grant
		err = fosite.ErrInvalidGrant.WithHint("The refresh token was already used or was revoked; every token of its grant is now revoked.")
	}
	if err != nil {
		p.refuseToken(w, r, err)
		return
	}
	if !p.issue(w, r, ar, grant) {
		return
	}
	p.cfg.Logger.Info("token issued",
		zap.String("client_id", ar.GetClient().GetID()),
		zap.String("grant_type", grant),
		zap.String("user", ar.GetSession().GetUsername()),
		zap.Strings("scopes", ar.GetGrantedScopes()))
}

// serveClientCredentials is the client_credentials grant (RFC 6749 §4.4).
func (p *Provider) serveClientCredentials(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()

	sess := &Session{}
	ar, err := p.oauth2.NewAccessRequest(ctx, r, sess)
	if err != nil {
		p.refuseToken(w, r, err)
		return
	}
	client, ok := ar.GetClient().(*clients.Client)
	if !ok {
		p.refuseToken(w, r, fosite.ErrInvalidClient)
		return
	}

	requested := ar.GetRequestedScopes()
	if slices.Contains(requested, clients.ScopeBearerAuthz) {
		for _, s := range requested {
			if s != clients.ScopeBearerAuthz && s != "offline" && s != "offline_access" {
				p.refuseToken(w, r, fosite.ErrInvalidScope.WithHintf("The scope '%s' must be requested alone or with offline_access.", clients.ScopeBearerAuthz))
				return
			}
		}
	}
	for _, s := range requested {
		ar.GrantScope(s)
	}

	resources := r.PostForm["resource"]
	for _, res := range resources {
		if err := audience.ParseResource(res); err != nil {
			p.refuseToken(w, r, errInvalidTarget(err.Error()))
			return
		}
		if !audience.Allowed(client.GetAudience(), res) {
			p.refuseToken(w, r, errInvalidTarget("The client may not request the resource '"+res+"'."))
			return
		}
	}
	audiences := slices.Clone([]string(ar.GetRequestedAudience()))
	for _, a := range audiences {
		if err := checkRequestedURL(a); err != nil {
			p.refuseToken(w, r, errInvalidTarget("The "+err.Error()))
			return
		}
	}
	for _, res := range resources {
		if err := checkRequestedURL(res); err != nil {
			p.refuseToken(w, r, errInvalidTarget("The "+err.Error()))
			return
		}
	}
	audiences = append(audiences, resources...)
	if len(audiences) == 0 && client.ImplicitAudience() {
		audiences = slices.Clone([]string(client.GetAudience()))
	}
	for _, a := range audiences {
		if !slices.Contains(ar.GetGrantedAudience(), a) {
			ar.GrantAudience(a)
		}
	}

	sess.Subject = client.ID()
	sess.ClientCredentials = true
	if !p.issue(w, r, ar, clients.GrantClientCredentials) {
		return
	}
	p.cfg.Logger.Info("token issued",
		zap.String("client_id", client.ID()),
		zap.String("grant_type", clients.GrantClientCredentials),
		zap.Strings("scopes", ar.GetGrantedScopes()),
		zap.Strings("audience", ar.GetGrantedAudience()),
		zap.Duration("expires_in", time.Until(sess.GetExpiresAt(fosite.AccessToken)).Round(time.Second)))
}

// issue mints the tokens of an accepted request and writes them, or answers the error; it
// reports whether tokens were issued.
func (p *Provider) issue(w http.ResponseWriter, r *http.Request, ar fosite.AccessRequester, grant string) bool {
	resp, err := p.oauth2.NewAccessResponse(r.Context(), ar)
	if err != nil {
		p.refuseToken(w, r, err)
		return false
	}
	p.oauth2.WriteAccessResponse(r.Context(), w, ar, resp)
	if p.cfg.OnTokenIssued != nil {
		p.cfg.OnTokenIssued(ar.GetClient().GetID(), grant)
	}
	return true
}

// refuseToken answers a token request with its RFC 6749 error and logs one line naming the
// client as presented, the grant and the reason; never the secret or a token.
func (p *Provider) refuseToken(w http.ResponseWriter, r *http.Request, err error) {
	rfc := rfcError(err)
	if rfc.CodeField < 500 && !isUnavailable(err) {
		if p.cfg.OnTokenRefused != nil {
			grant := r.PostForm.Get("grant_type")
			if grant != clients.GrantClientCredentials && grant != grantAuthorizationCode && grant != grantRefreshToken && grant != grantDeviceCode {
				grant = "other"
			}
			p.cfg.OnTokenRefused(grant, rfc.ErrorField)
		}
		if rfc.ErrorField == errAuthorizationPending.ErrorField {
			// a waiting device polls every few seconds: not a line each time
			p.writeError(w, r, err)
			return
		}
		grant := r.PostForm.Get("grant_type")
		if !slices.Contains(knownGrants, grant) {
			grant = "other"
		}
		p.cfg.Logger.Info("token refused",
			zap.String("client_id", p.loggableClientID(r)),
			zap.String("grant_type", grant),
			zap.String("error", rfc.ErrorField),
			zap.String("reason", truncate(rfc.GetDescription(), 160)))
	}
	p.writeError(w, r, err)
}

// knownGrants are the grant types logged by name; any other value is logged as "other".
var knownGrants = []string{"client_credentials", "authorization_code", "refresh_token", "password", "implicit",
	"urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:jwt-bearer", "urn:ietf:params:oauth:grant-type:token-exchange"}

// loggableClientID is the client id a request names when it is registered, else "(unknown)":
// callers write what they like there, a secret pasted into the wrong field included.
func (p *Provider) loggableClientID(r *http.Request) string {
	id := presentedClientID(r)
	if _, ok := p.cfg.Clients(id); ok {
		return id
	}
	return "(unknown)"
}

// truncate cuts s to at most n bytes (on a rune boundary), marking the cut with "…".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// presentedClientID is the client id a request names, in its Basic credentials, its form or its
// client assertion's sub (not verified), or "".
func presentedClientID(r *http.Request) string {
	if id, _, ok := r.BasicAuth(); ok {
		if u, err := url.QueryUnescape(id); err == nil {
			return u
		}
		return id
	}
	if id := r.PostForm.Get("client_id"); id != "" {
		return id
	}
	return clients.AssertionSubject(r.PostForm)
}

func errInvalidTarget(desc string) *fosite.RFC6749Error {
	return &fosite.RFC6749Error{ErrorField: "invalid_target", DescriptionField: desc, CodeField: http.StatusBadRequest}
}

// audienceStrategy is fosite's AudienceMatchingStrategy with the Portcullis rule.
func audienceStrategy(allowed []string, requested []string) error {
	for _, r := range requested {
		if !audience.Allowed(allowed, r) {
			return errInvalidTarget(fmt.Sprintf("The client may not request the audience '%s'.", r))
		}
	}
	return nil
}

// checkRequestedURL refuses a requested audience or resource that is an http(s) URL the gateway
// could never match: with a query, a fragment, user info or a path CheckPath refuses. A resource
// server that trusts the "aud" of introspection must not be handed "https://host/api/../admin".
func checkRequestedURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil // not a URL the audience rule reads; the client's list decides
	}
	if _, err := audience.ParseEntry(s); err != nil {
		return fmt.Errorf("audience %s", err)
	}
	return nil
}

// The user grants of the token endpoint.
const (
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
)

// grantLocks serialises exchanges of one code or refresh token across every config of the
// process that uses the same store (configs share it across a reload); on a store several nodes
// share, claimGrant serialises them across the nodes.
var grantLocks keyedLocks

// keyedLocks is a fixed table of mutexes picked by a hash of the key: exchanges of the same
// grant wait for one another; others rarely share a mutex.
type keyedLocks struct {
	mu [256]sync.Mutex
}

func (k *keyedLocks) lock(key string) (unlock func()) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	m := &k.mu[h.Sum32()%uint32(len(k.mu))]
	m.Lock()
	return m.Unlock
}
