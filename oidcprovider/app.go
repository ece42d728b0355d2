// Package oidcprovider is Portcullis's OpenID Connect 1.0 provider for Caddy: the "oidc" app,
// which owns the configuration, the registered clients, the keys and the store, and the
// http.handlers.oidc_provider handler that serves the protocol endpoints.
package oidcprovider

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider/secretcache"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/throttle"
)

func init() {
	caddy.RegisterModule((*App)(nil))
}

// AppName is the module ID of the oidc app, and the name of its global Caddyfile option.
const AppName = "oidc"

// Keys of values the provider generates once and keeps in the store.
var (
	keyHMACSecret = []byte("meta/hmac_secret")
	keySigningKey = []byte("meta/signing_key/default")
)

// verifiedSecrets remembers client secrets that passed a digest check, across config reloads.
var verifiedSecrets = secretcache.New(4096, time.Hour)

// App is the oidc app: one per Caddy config, shared by the provider's site and every protected
// site. Configure it with the global "oidc" Caddyfile option or under "apps" → "oidc" in JSON.
type App struct {
	// Issuer is the provider's issuer URL, e.g. https://auth.example.com. It must be https, except
	// for loopback hosts (localhost, *.localhost, 127.0.0.0/8, ::1). JSON: "issuer"; required.
	Issuer string `json:"issuer"`
	// Storage is the directory of the embedded Badger database. JSON: "storage"; default
	// <caddy data dir>/portcullis.
	Storage string `json:"storage,omitempty"`
	// HMACSecret keys the HMAC of opaque tokens; at least 32 bytes. {env.*} and {file.*}
	// placeholders are resolved at start. JSON: "hmac_secret"; default: generated on first start
	// and kept in the store.
	HMACSecret string `json:"hmac_secret,omitempty"`
	// SigningKeys are the keys published in the JWKS and used to sign. JSON: "signing_keys";
	// default: one RSA-2048 RS256 key generated on first start and kept in the store.
	SigningKeys []SigningKey `json:"signing_keys,omitempty"`
	// Lifespans of tokens. JSON: "lifespans"; defaults: access_token 1h, authorize_code 1m,
	// id_token 1h, refresh_token 90m.
	Lifespans Lifespans `json:"lifespans,omitzero"`
	// EnforcePKCE is never, public_clients_only or always (for the authorization code flow).
	// JSON: "enforce_pkce"; default public_clients_only.
	EnforcePKCE string `json:"enforce_pkce,omitempty"`
	// Clients are the registered clients. JSON: "clients".
	Clients []ClientConfig `json:"clients,omitempty"`
	// AccessControl holds the gateway's global rules, applied by oidc_auth. JSON:
	// "access_control"; default: no rules and default_policy deny.
	AccessControl *accesscontrol.Config `json:"access_control,omitempty"`

	issuer      string
	issuerURL   *url.URL
	dir         string
	hmacSecret  []byte
	fileKeys    []*signingKey
	clients     map[string]*Client
	networks    map[string][]netip.Prefix
	globalRules *accesscontrol.RuleSet
	defaultPol  accesscontrol.Policy
	logger      *zap.Logger

	acquired bool
	state    atomic.Pointer[runtimeState]

	clientFailures *throttle.Limiter
	ipFailures     *throttle.Limiter
}

// runtimeState is what Start builds once the store is open.
type runtimeState struct {
	kv       KV
	provider *provider
	keys     []*signingKey
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: AppName, New: func() caddy.Module { return new(App) }}
}

// Provision resolves and checks the configuration. It is fast and touches no store, so
// `caddy validate` works while a server holds the database.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	repl := caddy.NewReplacer()

	issuer, err := repl.ReplaceOrErr(a.Issuer, true, true)
	if err != nil {
		return fmt.Errorf("oidc: issuer: %w", err)
	}
	if a.issuerURL, err = parseIssuer(issuer); err != nil {
		return err
	}
	a.issuer = strings.TrimSuffix(a.issuerURL.String(), "/")

	dir := a.Storage
	if dir == "" {
		dir = filepath.Join(caddy.AppDataDir(), "portcullis")
	}
	if dir, err = repl.ReplaceOrErr(dir, true, true); err != nil {
		return fmt.Errorf("oidc: storage: %w", err)
	}
	if a.dir, err = store.Key(dir); err != nil {
		return fmt.Errorf("oidc: storage: %w", err)
	}

	if a.HMACSecret != "" {
		s, err := repl.ReplaceOrErr(a.HMACSecret, false, true)
		if err != nil {
			return fmt.Errorf("oidc: hmac_secret: %w", err)
		}
		switch {
		case s == "":
			a.logger.Warn("hmac_secret resolved to an empty value (is its environment variable set?); using the secret generated and kept in the store")
		case len(s) < 32:
			return fmt.Errorf("oidc: hmac_secret must be at least 32 bytes (it has %d); generate one with: openssl rand -hex 32", len(s))
		default:
			a.hmacSecret = []byte(s)
		}
	}

	seen := map[string]bool{}
	hasRS256 := false
	for i, kc := range a.SigningKeys {
		kc.KeyFile, err = repl.ReplaceOrErr(kc.KeyFile, true, true)
		if err != nil {
			return fmt.Errorf("oidc: signing_key #%d: key_file: %w", i+1, err)
		}
		k, err := loadSigningKey(kc)
		if err != nil {
			return fmt.Errorf("oidc: signing_key #%d: %w", i+1, err)
		}
		if seen[k.id] {
			return fmt.Errorf("oidc: signing_key #%d: key_id %q is used twice", i+1, k.id)
		}
		seen[k.id] = true
		hasRS256 = hasRS256 || k.algorithm == "RS256"
		a.fileKeys = append(a.fileKeys, k)
	}
	if len(a.fileKeys) > 0 && !hasRS256 {
		return errors.New("oidc: signing_key: at least one RS256 key is required (OpenID Connect mandates RS256); add an RSA key with 'algorithm RS256'")
	}

	if err := a.provisionLifespans(); err != nil {
		return err
	}
	switch a.EnforcePKCE {
	case "":
		a.EnforcePKCE = "public_clients_only"
	case "never", "public_clients_only", "always":
	default:
		return fmt.Errorf("oidc: enforce_pkce %q must be never, public_clients_only or always", a.EnforcePKCE)
	}

	a.clients = make(map[string]*Client, len(a.Clients))
	for _, cc := range a.Clients {
		if cc.Secret != "" {
			if cc.Secret, err = repl.ReplaceOrErr(cc.Secret, true, true); err != nil {
				return fmt.Errorf("oidc: client %s: client_secret: %w", cc.ID, err)
			}
		}
		c, err := newClient(cc, a.Lifespans)
		if err != nil {
			return fmt.Errorf("oidc: %w", err)
		}
		if _, dup := a.clients[c.ID()]; dup {
			return fmt.Errorf("oidc: client %s: client_id is registered twice", c.ID())
		}
		if c.plaintext {
			a.logger.Warn("client secret is stored as plaintext; store a digest instead (e.g. $pbkdf2-sha512$…)", zap.String("client_id", c.ID()))
		}
		a.clients[c.ID()] = c
	}

	if err := a.provisionAccessControl(); err != nil {
		return err
	}
	a.clientFailures = throttle.New(10, 6*time.Second, 1<<16)
	a.ipFailures = throttle.New(20, 3*time.Second, 1<<16)
	return nil
}

func (a *App) provisionLifespans() error {
	check := func(name string, l *Lifespans) error {
		for opt, d := range map[string]caddy.Duration{"access_token": l.AccessToken, "authorize_code": l.AuthorizeCode, "id_token": l.IDToken, "refresh_token": l.RefreshToken} {
			if d < 0 {
				return fmt.Errorf("oidc: lifespans%s: %s must be positive", name, opt)
			}
		}
		return nil
	}
	if err := check("", &a.Lifespans); err != nil {
		return err
	}
	for n, set := range a.Lifespans.Custom {
		if n == "" {
			return errors.New("oidc: lifespans: custom lifespan with an empty name")
		}
		if set.Custom != nil {
			return fmt.Errorf("oidc: lifespans: custom %s: custom sets do not nest", n)
		}
		if err := check(" custom "+n, &set); err != nil {
			return err
		}
	}
	custom := a.Lifespans.Custom
	a.Lifespans = mergeLifespans(a.Lifespans, defaultLifespans)
	a.Lifespans.Custom = custom
	return nil
}

// parseIssuer checks the issuer: an absolute https URL (http only for loopback hosts) with no
// query, fragment or user info.
func parseIssuer(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("oidc: issuer is required, e.g. 'issuer https://auth.example.com'")
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("oidc: issuer %q must be an absolute URL such as https://auth.example.com", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("oidc: issuer %q may not carry a query, a fragment or user info", s)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("oidc: issuer %q must use https (http is only allowed for localhost and loopback addresses)", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

func isLoopbackHost(h string) bool {
	h = strings.ToLower(h)
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Validate is called after Provision.
func (a *App) Validate() error { return nil }

// Start opens (or shares) the store and prepares secrets, keys and the fosite composition.
func (a *App) Start() error {
	kv, err := store.Acquire(a.dir)
	if err != nil {
		return fmt.Errorf("oidc: opening store %s: %w (if another Caddy process uses this directory, stop it or use 'caddy reload')", a.dir, err)
	}
	a.acquired = true

	secret := a.hmacSecret
	if secret == nil {
		secret, err = kv.GetOrCreate(keyHMACSecret, func() ([]byte, error) {
			b := make([]byte, 64)
			_, err := rand.Read(b)
			return b, err
		})
		if err != nil {
			return fmt.Errorf("oidc: hmac secret: %w", err)
		}
	}
	keys := a.fileKeys
	if len(keys) == 0 {
		pemData, err := kv.GetOrCreate(keySigningKey, generateDefaultKeyPEM)
		if err != nil {
			return fmt.Errorf("oidc: default signing key: %w", err)
		}
		priv, err := parsePrivateKeyPEM(pemData)
		if err != nil {
			return fmt.Errorf("oidc: default signing key in store: %w", err)
		}
		k, err := newSigningKey(priv, "RS256", "")
		if err != nil {
			return fmt.Errorf("oidc: default signing key: %w", err)
		}
		keys = []*signingKey{k}
	}

	current := make(map[string]secretcache.Key, len(a.clients))
	for id, c := range a.clients {
		current[id] = c.fingerprint
	}
	verifiedSecrets.Retain(current)

	a.state.Store(&runtimeState{kv: kv, provider: newProvider(a, kv, secret), keys: keys})
	a.logger.Info("oidc provider started", zap.String("issuer", a.issuer), zap.String("storage", a.dir), zap.Int("clients", len(a.clients)))
	return nil
}

// Stop releases the store; the database closes when no config uses it any more.
func (a *App) Stop() error {
	a.state.Store(nil)
	if !a.acquired {
		return nil
	}
	a.acquired = false
	return store.Release(a.dir)
}

// IssuerURL is the issuer without a trailing slash.
func (a *App) IssuerURL() string { return a.issuer }

// client returns the registered client with the id.
func (a *App) client(id string) (*Client, bool) {
	c, ok := a.clients[id]
	return c, ok
}

// Client returns the registered client with the id, for the gateway.
func (a *App) Client(id string) (*Client, bool) { return a.client(id) }

// running returns the started state, or nil while the store is not open.
func (a *App) running() *runtimeState { return a.state.Load() }

var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Validator   = (*App)(nil)
)
