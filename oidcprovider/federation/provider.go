package federation

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// Errors of a flow, for errors.Is. None of them carries a token or a code.
var (
	// ErrUnreachable is an upstream that cannot be reached (discovery, the token endpoint or
	// the user API failing): the person is told to sign in with their password.
	ErrUnreachable = errors.New("federation: the identity provider cannot be reached")
	// ErrState is a callback of no live flow of this browser: an unknown, expired, used or
	// tampered state, or a callback opened in another browser.
	ErrState = errors.New("federation: no sign-in of this browser is waiting for this answer")
	// ErrDenied is an upstream that answered with an error (the person declined, say).
	ErrDenied = errors.New("federation: the identity provider did not sign the person in")
	// ErrToken is an answer that does not hold: an ID token with a bad signature, issuer,
	// audience, expiry or nonce, or a token response without an ID token.
	ErrToken = errors.New("federation: the identity provider's answer does not check out")
)

// FlowLifespan is how long a flow may take from the button to the callback.
const FlowLifespan = 10 * time.Minute

// discoveryBackoff is how long a failed discovery is remembered before a page asks again.
const discoveryBackoff = 5 * time.Second

// discoveryTimeout bounds one discovery.
const discoveryTimeout = 5 * time.Second

// Intents of a flow.
const (
	IntentSignIn = "signin"
	IntentLink   = "link"
)

// Pending is what a flow carries from the button to the callback, besides its secrets.
type Pending struct {
	// RD is the return URL after sign-in (already checked by the portal).
	RD string `json:"rd,omitempty"`
	// Intent is IntentSignIn or IntentLink.
	Intent string `json:"intent"`
	// User is the signed-in user who is linking an identity (IntentLink).
	User string `json:"user,omitempty"`
}

// record is a pending flow as the store keeps it (under a digest of its state).
type record struct {
	Pending
	Provider string    `json:"provider"`
	Verifier string    `json:"verifier"` // the PKCE code verifier
	Nonce    string    `json:"nonce"`
	Binding  []byte    `json:"binding"` // SHA-256 of the browser's binding cookie value
	Created  time.Time `json:"created"`
}

// Identity is who the upstream says signed in.
type Identity struct {
	// Provider is the provider's name.
	Provider string
	// Subject is the upstream's stable id of the person (sub; GitHub's numeric user id).
	Subject string
	// Username is the claim_username value ("" when the upstream sent none).
	Username string
	// Email is the upstream's e-mail address ("" for none).
	Email string
	// EmailVerified says the upstream verified Email (GitHub: the verified primary address).
	EmailVerified bool
	// Name is the person's name, when the upstream gives it.
	Name string
	// MFA says the upstream reported several factors (amr mfa, or a multi-factor acr).
	MFA bool
}

// Provider is one upstream identity provider.
type Provider struct {
	cfg         Config
	redirectURL string
	kv          store.KV
	key         []byte
	client      *http.Client
	now         func() time.Time

	discovery atomic.Pointer[oidc.Provider] // nil until discovered
	mu        sync.Mutex                    // one discovery at a time
	failedAt  time.Time                     // the last failed discovery
	failure   error
}

// New builds a provider from a validated config: redirectURL is the callback URL registered at
// the upstream, kv keeps the flows, key (at least 32 bytes) keys the digests of states and
// browser bindings, client makes the upstream calls (nil: a client with a 10 s timeout). No
// upstream is called before the first flow, so the provider starts while its upstream is down.
func New(cfg Config, redirectURL string, kv store.KV, key []byte, client *http.Client) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if kv == nil || len(key) < 32 || redirectURL == "" {
		return nil, fmt.Errorf("%w: a store, a 32-byte key and a redirect URL are required", ErrConfig)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Provider{cfg: cfg, redirectURL: redirectURL, kv: kv, key: key, client: client, now: time.Now}, nil
}

// Config is the provider's config, defaults filled in.
func (p *Provider) Config() Config { return p.cfg }

// RedirectURL is the callback URL to register at the upstream.
func (p *Provider) RedirectURL() string { return p.redirectURL }

// Origins are the origins a browser is sent to when a flow begins, as far as known now (the
// issuer's, and the discovered authorization endpoint's): a page whose form begins a flow
// allows them in its form-action.
func (p *Provider) Origins() []string {
	if p.cfg.Type == TypeGitHub {
		return []string{origin(p.githubURL(p.cfg.AuthURL, githubAuthURL))}
	}
	out := []string{origin(p.cfg.Issuer)}
	if d := p.discovery.Load(); d != nil {
		if o := origin(d.Endpoint().AuthURL); o != out[0] {
			out = append(out, o)
		}
	}
	return out
}

// origin is scheme://host of a URL ("" when it has none).
func origin(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// Discover finds the upstream's endpoints and keys (type oidc; nothing for github), unless they
// are known, at most once a discoveryBackoff after a failure. The portal calls it as a sign-in
// page is shown, so the page's form-action soon names the authorization endpoint.
func (p *Provider) Discover(ctx context.Context) error {
	_, err := p.discover(ctx, forPage)
	return err
}

// How discover may use what is known.
type discoverMode int

const (
	forPage   discoverMode = iota // known, or one try at most each discoveryBackoff; never waits for another
	forFinish                     // known, or a new one (waiting for another under way)
	fresh                         // a new one whatever is known (a flow beginning)
)

// discover returns the upstream's discovery as mode allows. A flow beginning (fresh) asks the
// upstream again whatever is known, so a browser is never sent to an upstream that is down.
func (p *Provider) discover(ctx context.Context, mode discoverMode) (*oidc.Provider, error) {
	if p.cfg.Type != TypeOIDC {
		return nil, nil
	}
	if d := p.discovery.Load(); d != nil && mode != fresh {
		return d, nil
	}
	if mode != forPage {
		p.mu.Lock()
	} else if !p.mu.TryLock() {
		// a discovery is under way: a page does not wait for it (nor pile up behind it)
		return nil, fmt.Errorf("%w: discovery at %s is under way", ErrUnreachable, p.cfg.Issuer)
	}
	defer p.mu.Unlock()
	if d := p.discovery.Load(); d != nil && mode != fresh {
		return d, nil
	}
	if mode == forPage && !p.failedAt.IsZero() && p.now().Sub(p.failedAt) < discoveryBackoff {
		return nil, p.failure
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, p.client), discoveryTimeout)
	defer cancel()
	d, err := oidc.NewProvider(ctx, p.cfg.Issuer)
	if err != nil {
		p.failedAt, p.failure = p.now(), fmt.Errorf("%w: discovery at %s: %w", ErrUnreachable, p.cfg.Issuer, err)
		return nil, p.failure
	}
	p.discovery.Store(d)
	p.failure = nil
	return d, nil
}

// oauth2Config is the OAuth 2.0 client of the upstream.
func (p *Provider) oauth2Config(d *oidc.Provider) *oauth2.Config {
	c := &oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret, RedirectURL: p.redirectURL, Scopes: p.cfg.Scopes}
	if d != nil {
		c.Endpoint = d.Endpoint()
	} else {
		c.Endpoint = oauth2.Endpoint{AuthURL: p.githubURL(p.cfg.AuthURL, githubAuthURL), TokenURL: p.githubURL(p.cfg.TokenURL, githubTokenURL)}
	}
	return c
}

func (p *Provider) githubURL(override, def string) string {
	if override != "" {
		return override
	}
	return def
}

// stateKey is the store key of the flow of state: a digest, so the store holds no state.
func (p *Provider) stateKey(state string) []byte {
	return []byte("federation/flow/" + hex.EncodeToString(p.mac("state", state)))
}

func (p *Provider) mac(purpose, v string) []byte {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(purpose + "\x00" + p.cfg.Name + "\x00" + v))
	return m.Sum(nil)
}

// Begin starts a flow: it keeps the flow's secrets in the store and returns the upstream URL
// to send the browser to, and the value for the browser's binding cookie (the portal sets it;
// the callback must bring it back). It asks the upstream's discovery document again first:
// ErrUnreachable when that fails, so the person is told at once rather than sent to an
// upstream that is down.
func (p *Provider) Begin(ctx context.Context, pend Pending) (authURL, binding string, err error) {
	d, err := p.discover(ctx, fresh)
	if err != nil {
		return "", "", err
	}
	state, nonce, binding := rand.Text()+rand.Text(), rand.Text()+rand.Text(), rand.Text()+rand.Text()
	verifier := oauth2.GenerateVerifier()
	bind := sha256.Sum256([]byte(binding))
	rec, err := json.Marshal(record{Pending: pend, Provider: p.cfg.Name, Verifier: verifier, Nonce: nonce, Binding: bind[:], Created: p.now()})
	if err != nil {
		return "", "", err
	}
	if err := p.kv.Put(ctx, store.Entry{Key: p.stateKey(state), Value: rec, TTL: FlowLifespan}); err != nil {
		return "", "", fmt.Errorf("federation: keeping a flow: %w", err)
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if d != nil {
		opts = append(opts, oidc.Nonce(nonce))
	}
	return p.oauth2Config(d).AuthCodeURL(state, opts...), binding, nil
}

// take returns the flow of state and removes it: of callbacks racing on any nodes, one alone
// gets it. binding is the browser's cookie value; a flow begun in another browser is ErrState
// (and is spent all the same).
func (p *Provider) take(ctx context.Context, state, binding string) (*record, error) {
	if state == "" || len(state) > 256 {
		return nil, ErrState
	}
	key := p.stateKey(state)
	data, err := p.kv.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrState
	} else if err != nil {
		return nil, err
	}
	_, claimed, err := store.Claim(ctx, p.kv, []byte("federation/spent/"+hex.EncodeToString(p.mac("spent", state))), FlowLifespan)
	if err != nil {
		return nil, err
	}
	if !claimed {
		return nil, ErrState
	}
	_ = p.kv.Delete(context.WithoutCancel(ctx), key)
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil || rec.Provider != p.cfg.Name || p.now().Sub(rec.Created) > FlowLifespan {
		return nil, ErrState
	}
	got := sha256.Sum256([]byte(binding))
	if binding == "" || !hmac.Equal(got[:], rec.Binding) {
		return nil, ErrState
	}
	return &rec, nil
}

// Finish completes the flow the upstream's callback query q answers, for the browser whose
// binding cookie holds binding: the flow is spent, the code exchanged (with the PKCE verifier),
// the ID token checked (signature, issuer, audience, expiry, nonce) and the identity read. It
// returns the flow's Pending even with an error when the flow was found (to go back to its rd).
func (p *Provider) Finish(ctx context.Context, q url.Values, binding string) (*Identity, *Pending, error) {
	rec, err := p.take(ctx, q.Get("state"), binding)
	if err != nil {
		return nil, nil, err
	}
	if e := q.Get("error"); e != "" {
		return nil, &rec.Pending, fmt.Errorf("%w: %s", ErrDenied, sanitize(e))
	}
	code := q.Get("code")
	if code == "" {
		return nil, &rec.Pending, fmt.Errorf("%w: the callback has no code", ErrToken)
	}
	d, err := p.discover(ctx, forFinish)
	if err != nil {
		return nil, &rec.Pending, err
	}
	hctx := oidc.ClientContext(ctx, p.client)
	tok, err := p.oauth2Config(d).Exchange(hctx, code, oauth2.VerifierOption(rec.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return nil, &rec.Pending, fmt.Errorf("%w: the token endpoint refused the code: %s", ErrToken, sanitize(re.ErrorCode))
		}
		return nil, &rec.Pending, fmt.Errorf("%w: the token endpoint: %w", ErrUnreachable, err)
	}
	var id *Identity
	if d != nil {
		id, err = p.oidcIdentity(hctx, d, tok, rec.Nonce)
	} else {
		id, err = p.githubIdentity(hctx, tok)
	}
	if err != nil {
		return nil, &rec.Pending, err
	}
	id.Provider = p.cfg.Name
	return id, &rec.Pending, nil
}

// sanitize keeps an upstream's error code short and printable for logs.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, s)
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// multiFactorACR are acr values that say the upstream used several factors.
var multiFactorACR = []string{"mfa", "http://schemas.openid.net/pape/policies/2007/06/multi-factor"}

// oidcIdentity checks the ID token of tok and reads the identity from it (and from userinfo
// for what it lacks).
func (p *Provider) oidcIdentity(ctx context.Context, d *oidc.Provider, tok *oauth2.Token, nonce string) (*Identity, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, fmt.Errorf("%w: the token response has no ID token", ErrToken)
	}
	idt, err := d.Verifier(&oidc.Config{ClientID: p.cfg.ClientID, Now: p.now}).Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: the ID token: %w", ErrToken, err)
	}
	if !hmac.Equal([]byte(idt.Nonce), []byte(nonce)) {
		return nil, fmt.Errorf("%w: the ID token's nonce is not this flow's", ErrToken)
	}
	if idt.Subject == "" {
		// every subject-less identity would be one link, one person
		return nil, fmt.Errorf("%w: the ID token has no subject", ErrToken)
	}
	var c map[string]any
	if err := idt.Claims(&c); err != nil {
		return nil, fmt.Errorf("%w: the ID token's claims: %w", ErrToken, err)
	}
	if _, hasMail := c["email"]; !hasMail || c[p.cfg.ClaimUsername] == nil {
		// some providers put the profile in userinfo alone
		if ui, err := d.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil && ui.Subject == idt.Subject {
			var more map[string]any
			if ui.Claims(&more) == nil {
				if _, ok := c["email"]; ok {
					// userinfo's email_verified vouches for its own address alone
					if a, _ := c["email"].(string); a == "" || a != more["email"] {
						delete(more, "email_verified")
					}
				}
				for k, v := range more {
					if _, ok := c[k]; !ok {
						c[k] = v
					}
				}
			}
		}
	}
	id := &Identity{Subject: idt.Subject}
	id.Email, _ = c["email"].(string)
	switch v := c["email_verified"].(type) {
	case bool:
		id.EmailVerified = v
	case string:
		id.EmailVerified = v == "true"
	}
	id.Name, _ = c["name"].(string)
	id.Username, _ = c[p.cfg.ClaimUsername].(string)
	if p.cfg.ClaimUsername == "email" && !id.EmailVerified {
		id.Username = "" // an address the upstream has not verified names no one (as for GitHub)
	}
	if amr, ok := c["amr"].([]any); ok {
		for _, m := range amr {
			if m == "mfa" {
				id.MFA = true
			}
		}
	}
	if acr, _ := c["acr"].(string); slices.Contains(multiFactorACR, acr) {
		id.MFA = true
	}
	return id, nil
}

// githubIdentity reads the person from GitHub's user API: /user, and /user/emails for the
// verified primary address.
func (p *Provider) githubIdentity(ctx context.Context, tok *oauth2.Token) (*Identity, error) {
	api := strings.TrimSuffix(p.githubURL(p.cfg.APIURL, githubAPIURL), "/")
	var user struct {
		ID    int64  `json:"id"`
		Login string `json:"login"`
		Name  string `json:"name"`
	}
	if err := p.githubGet(ctx, tok, api+"/user", &user); err != nil {
		return nil, err
	}
	if user.ID == 0 || user.Login == "" {
		return nil, fmt.Errorf("%w: GitHub's /user has no id or login", ErrToken)
	}
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	if err := p.githubGet(ctx, tok, api+"/user/emails", &emails); err != nil {
		return nil, err
	}
	id := &Identity{Subject: fmt.Sprint(user.ID), Name: user.Name, Username: user.Login}
	for _, e := range emails {
		if e.Primary {
			id.Email, id.EmailVerified = e.Email, e.Verified
		}
	}
	if p.cfg.ClaimUsername == "email" {
		id.Username = ""
		if id.EmailVerified {
			id.Username = id.Email
		}
	}
	return id, nil
}

func (p *Provider) githubGet(ctx context.Context, tok *oauth2.Token, u string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	tok.SetAuthHeader(req)
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: GitHub's user API: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: GitHub's %s answered %d", ErrUnreachable, u, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(into); err != nil {
		return fmt.Errorf("%w: GitHub's %s: %w", ErrToken, u, err)
	}
	return nil
}
