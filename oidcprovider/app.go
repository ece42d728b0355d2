// Package oidcprovider is Portcullis's OpenID Connect 1.0 provider for Caddy: the "oidc" app,
// which owns the configuration, the registered clients, the keys and the store, and the
// http.handlers.oidc_provider handler that routes the protocol endpoints and the portal's pages.
// It is the Caddy integration only: the protocol and the browser's side of the flows live in
// oauth, clients in clients, digest checks in digest, keys in keys, the audience rule in audience,
// the database in store, people in users, bans and the password guard in regulation, the pages in
// portal. The gateway (package caddyauth) talks to it through the API of api.go.
package oidcprovider

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/ory/fosite"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider/claims"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/consent"
	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
	"github.com/portcullis-auth/portcullis/oidcprovider/federation"
	"github.com/portcullis-auth/portcullis/oidcprovider/keys"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/totp"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/webauthn"
	"github.com/portcullis-auth/portcullis/oidcprovider/notify"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/portal"
	"github.com/portcullis-auth/portcullis/oidcprovider/regulation"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
	"github.com/portcullis-auth/portcullis/oidcprovider/users/ldap"
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

// App is the oidc app: one per Caddy config, shared by the provider's site and every protected
// site. Configure it with the global "oidc" Caddyfile option or under "apps" → "oidc" in JSON.
type App struct {
	// Issuer is the provider's issuer URL, e.g. https://auth.example.com. It must be https, except
	// for loopback hosts (localhost, *.localhost, 127.0.0.0/8, ::1). JSON: "issuer". Required.
	Issuer string `json:"issuer"`
	// Storage is where the records live: the embedded Badger database (its directory and,
	// optionally, its memory settings) or a PostgreSQL database shared by several nodes. JSON:
	// "storage", either the Badger directory as a string, an object {"dir": …, "memtable_size":
	// …}, or {"postgres": {…}} (see StorageConfig). Default: Badger in <caddy data
	// dir>/portcullis with the gateway-sized settings of store.Options.
	Storage StorageConfig `json:"storage,omitzero"`
	// HMACSecret keys the HMAC of opaque tokens; at least 32 bytes. {env.*} and {file.*}
	// placeholders are resolved at start. Changing it ends every token minted under the old one.
	// JSON: "hmac_secret". Default: generated on first start and kept in the store.
	HMACSecret string `json:"hmac_secret,omitempty"`
	// SigningKeys are the keys published in the JWKS and used to sign. JSON: "signing_keys".
	// Default: one RSA-2048 RS256 key generated on first start and kept in the store.
	SigningKeys []SigningKey `json:"signing_keys,omitempty"`
	// Lifespans of tokens. JSON: "lifespans". Default: access_token 1h, authorize_code 1m,
	// id_token 1h, refresh_token 90m, device_code 10m.
	Lifespans Lifespans `json:"lifespans,omitzero"`
	// EnforcePKCE is never, public_clients_only or always (for the authorization code flow).
	// JSON: "enforce_pkce". Default: public_clients_only.
	EnforcePKCE string `json:"enforce_pkce,omitempty"`
	// EnablePKCEPlainChallenge lets clients use the plain PKCE method beside S256, and lets a
	// client pin it with pkce_challenge_method plain. JSON: "enable_pkce_plain_challenge".
	// Default: false (S256 only).
	EnablePKCEPlainChallenge bool `json:"enable_pkce_plain_challenge,omitempty"`
	// MinimumParameterEntropy is the least length of the state and nonce parameters of an
	// authorization request; below 8 is unsafe (a warning is logged), and -1 lowers it to one
	// character (fosite still requires a state).
	// JSON: "minimum_parameter_entropy". Default: 8 (0 means the default).
	MinimumParameterEntropy int `json:"minimum_parameter_entropy,omitempty"`
	// RequirePushedAuthorizationRequests makes every client push its authorization requests
	// (RFC 9126) first; a client's own option requires it of that client alone. JSON:
	// "require_pushed_authorization_requests". Default: false.
	RequirePushedAuthorizationRequests bool `json:"require_pushed_authorization_requests,omitempty"`
	// AuthorizationPolicies are named policies a client selects with its authorization_policy:
	// who may sign in to it (rules of subjects and networks, first match wins, then the
	// default). The names one_factor, two_factor and deny are reserved. JSON:
	// "authorization_policies", an object of name → {default_policy, rules}. Default: none.
	AuthorizationPolicies map[string]accesscontrol.ClientPolicyConfig `json:"authorization_policies,omitempty"`
	// ClaimsPolicies are named lists of the claims ID tokens carry, which a client selects with
	// its claims_policy. JSON: "claims_policies", an object of name → {id_token}. Default: none
	// (ID tokens carry every claim of the granted scopes).
	ClaimsPolicies map[string]ClaimsPolicy `json:"claims_policies,omitempty"`
	// Clients are the registered clients. JSON: "clients". Default: none.
	Clients []ClientConfig `json:"clients,omitempty"`
	// AccessControl holds the gateway's global rules, applied by oidc_auth. JSON:
	// "access_control". Default: no rules and default_policy deny.
	AccessControl *accesscontrol.Config `json:"access_control,omitempty"`
	// UsersFile is a users file in Authelia's users_database.yml format; its people sign in at
	// the portal (and through it to applications) and may call protected sites with Basic
	// credentials. It is re-read when it changes; a bad edit keeps the last good version and is
	// logged. JSON: "users_file". Default: none (no portal; Basic credentials are passed on
	// untouched).
	UsersFile string `json:"users_file,omitempty"`
	// LDAP takes the people from an LDAP directory instead of a users file, with Authelia's
	// authentication_backend.ldap keys (see package users/ldap). JSON: "ldap". Default: none.
	LDAP *ldap.Config `json:"ldap,omitempty"`
	// Notifier sends people one-time codes (before a second factor is added or removed, or a
	// password changed), password-reset links and notices of changes to their account, by
	// SMTP or to a file (Authelia's notifier keys; see package notify). JSON: "notifier".
	// Default: none (no mail: a first second factor is enrolled by the operator).
	Notifier *notify.Config `json:"notifier,omitempty"`
	// Regulation bans password guessing (the portal's sign-in and Basic credentials) and
	// second-factor guessing, counted per (user, address) and per address.
	// JSON: "regulation". Default: Authelia's (max_retries 3, find_time 2m, ban_time 5m).
	Regulation *RegulationConfig `json:"regulation,omitempty"`
	// Session is the portal's sign-in session: its cookie and lifetimes. Needs users_file.
	// JSON: "session". Default: a host-only cookie on the issuer, Authelia's lifetimes.
	Session *SessionConfig `json:"session,omitempty"`
	// TOTP configures one-time codes as a second factor. JSON: "totp". Default: enabled, SHA1,
	// 6 digits, 30s.
	TOTP *TOTPConfig `json:"totp,omitempty"`
	// WebAuthn configures security keys and passkeys as a second factor. JSON: "webauthn".
	// Default: enabled.
	WebAuthn *WebAuthnConfig `json:"webauthn,omitempty"`
	// PasswordReset offers "Forgot password?" on the sign-in page: a one-time link mailed by
	// the notifier, or a link to another service (custom_url). JSON: "password_reset".
	// Default: offered when there is a notifier.
	PasswordReset *PasswordResetConfig `json:"password_reset,omitempty"`
	// IdentityValidation is the proof of identity asked before a second factor is added or
	// removed and before a password change (Authelia's identity_validation; see
	// ElevatedSessionConfig). Needs users_file. JSON: "identity_validation". Default: a code
	// mailed by the notifier, 8 characters, valid 5m, elevating the session for 10m.
	IdentityValidation *IdentityValidationConfig `json:"identity_validation,omitempty"`
	// CORS lets browser applications on other origins call the provider's endpoints (see
	// CORSConfig). JSON: "cors". Default: none (no other origin is allowed).
	CORS *CORSConfig `json:"cors,omitempty"`
	// IdentityProviders are upstream identity providers people may sign in through beside
	// their password ("Sign in with …" buttons): OpenID Connect providers or GitHub, each
	// mapping its identities onto the users of users_file or ldap (see federation.Config).
	// Needs users_file or ldap. JSON: "identity_providers", a list of objects with "name",
	// "type", "issuer", "client_id", "client_secret", … Default: none.
	IdentityProviders []federation.Config `json:"identity_providers,omitempty"`

	issuer      string
	issuerURL   *url.URL
	dir         string    // the Badger directory (empty with PostgreSQL)
	spec        storeSpec // the store to open at Start
	hmacSecret  []byte
	fileKeys    []*keys.Key
	clients     map[string]*clients.Client
	cors        *corsPolicy // the provisioned cors block (nil: nothing allowed)
	globalRules *accesscontrol.RuleSet
	defaultPol  accesscontrol.Policy
	networks    map[string][]netip.Prefix
	logger      *zap.Logger
	ctx         caddy.Context
	metrics     *metrics

	// clientPolicies are the compiled authorization_policies, the built-ins included
	clientPolicies map[string]*accesscontrol.ClientPolicy

	// usersFile is the users file as Provision read it (nil without users_file); Start
	// publishes it in the running state, which requests read it from
	usersFile *users.File
	// directory is where people come from: the users file or the LDAP directory (nil without
	// either: no portal, and Basic credentials are passed on untouched)
	directory users.Directory
	// ldapDirectory is the LDAP directory when ldap is configured (closed at Cleanup)
	ldapDirectory *ldap.Directory
	// notifier delivers messages to people (nil without a notifier block)
	notifier notify.Notifier
	portal   *portalSettings

	// state is the running state: nil until Start publishes it and again from Stop. Everything
	// above is configuration, written by Provision only; Start and Stop write nothing else.
	state atomic.Pointer[runtimeState]
}

// runtimeState is what Start builds once the store is open, published at once; while it is
// published, the app holds one reference to its backend.
type runtimeState struct {
	backend  *backend
	provider *oauth.Provider
	ports    []portRange // the HTTP servers' listen ports
	secret   []byte      // the provider's secret, the root of the portal's keys

	// people, with a users_file (all nil without one)
	users     users.Directory   // the users file or the LDAP directory
	usersFile *users.File       // watched for changes while running (nil with LDAP)
	stopWatch chan struct{}     // closed to end the watch
	guard     *regulation.Guard // checks users' passwords
	sessions  *session.Store
	portal    *portal.Portal
	flow      *oauth.Flow       // the browser side of the flows, on the portal
	subjects  *claims.Subjects  // users' sub per sector
	consents  *consent.Store    // remembered consents
	totp      *totp.Devices     // TOTP devices (nil when TOTP is disabled)
	webauthn  *webauthn.Devices // security keys and passkeys (nil when WebAuthn is disabled)
	handoff   *handoffState     // the further cookie domains' sessions and codes (nil without)
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: AppName, New: func() caddy.Module { return new(App) }}
}

// Provision resolves and checks the configuration. It is fast and touches no store, so
// `caddy validate` works while a server holds the database.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.ctx = ctx
	repl := caddy.NewReplacer()
	m, err := newMetrics(ctx.GetMetricsRegistry(), a)
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	a.metrics = m

	issuer, err := repl.ReplaceOrErr(a.Issuer, true, true)
	if err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	if a.issuerURL, err = parseIssuer(issuer); err != nil {
		return err
	}
	a.issuer = strings.TrimSuffix(a.issuerURL.String(), "/")

	if err := a.provisionStorage(repl); err != nil {
		return err
	}

	if a.HMACSecret != "" {
		s, err := repl.ReplaceOrErr(a.HMACSecret, false, true)
		if err != nil {
			return fmt.Errorf("hmac_secret: %w", err)
		}
		switch {
		case s == "":
			a.logger.Warn("hmac_secret resolved to an empty value (is its environment variable set?); using the secret generated and kept in the store")
		case len(s) < 32:
			return fmt.Errorf("hmac_secret must be at least 32 bytes (it has %d); generate one with: openssl rand -hex 32", len(s))
		default:
			a.hmacSecret = []byte(s)
		}
	}

	if err := a.provisionKeys(repl); err != nil {
		return err
	}
	if err := a.provisionLifespans(); err != nil {
		return err
	}
	switch a.EnforcePKCE {
	case "":
		a.EnforcePKCE = "public_clients_only"
	case "never", "public_clients_only", "always":
	default:
		return fmt.Errorf("enforce_pkce %q must be never, public_clients_only or always", a.EnforcePKCE)
	}
	if err := a.provisionClientOptions(); err != nil {
		return err
	}
	if err := a.provisionClients(repl); err != nil {
		return err
	}
	if err := a.provisionCORS(); err != nil {
		return err
	}
	if err := a.provisionPeople(repl); err != nil {
		return err
	}
	if err := a.provisionPortal(); err != nil {
		return err
	}
	if err := a.provisionFederation(repl); err != nil {
		return err
	}
	if err := a.provisionPasswordReset(); err != nil {
		return err
	}
	if err := a.provisionIdentityValidation(); err != nil {
		return err
	}
	if err := a.provisionAccessControl(); err != nil {
		return err
	}
	return a.provisionClientPolicies()
}

func (a *App) provisionStorage(repl *caddy.Replacer) error {
	if err := a.Storage.check(); err != nil {
		return err
	}
	if a.Storage.Postgres != nil {
		c, err := resolvePostgres(repl, *a.Storage.Postgres, a.logger)
		if err != nil {
			return err
		}
		if err := c.Validate(); err != nil {
			return err
		}
		a.spec = storeSpec{key: "postgres:" + c.Identity(), pg: &c}
		return nil
	}
	dir := a.Storage.Dir
	if dir == "" {
		dir = filepath.Join(caddy.AppDataDir(), "portcullis")
	}
	dir, err := repl.ReplaceOrErr(dir, true, true)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("storage: resolving directory %q: %w", dir, err)
	}
	a.dir = filepath.Clean(abs)
	opts := a.Storage.Options.WithDefaults()
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	a.spec = storeSpec{key: a.dir, dir: a.dir, opts: opts}
	return nil
}

// resolvePostgres replaces the placeholders ({env.*}, {file.*}) of a PostgreSQL config. An
// unknown placeholder is an error naming its key; a password that resolves to nothing is logged
// (a server that trusts local connections needs none) rather than refused.
func resolvePostgres(repl *caddy.Replacer, c postgres.Config, logger *zap.Logger) (postgres.Config, error) {
	r := &placeholders{repl: repl, scope: "storage postgres"}
	resolve := r.resolve
	resolve("dsn", &c.DSN)
	resolve("address", &c.Address)
	resolve("database", &c.Database)
	resolve("schema", &c.Schema)
	resolve("username", &c.Username)
	if c.TLS != nil {
		t := *c.TLS
		resolve("tls server_name", &t.ServerName)
		resolve("tls minimum_version", &t.MinimumVersion)
		resolve("tls certificate_chain", &t.CertificateChain)
		resolve("tls private_key", &t.PrivateKey)
		resolve("tls ca_file", &t.CAFile)
		c.TLS = &t
	}
	if r.err != nil {
		return c, r.err
	}
	var err error
	if c.Password != "" {
		if c.Password, err = repl.ReplaceOrErr(c.Password, false, true); err != nil {
			return c, fmt.Errorf("storage postgres: password: %w", err)
		}
		if c.Password == "" {
			logger.Warn("storage postgres: password resolved to an empty value (is its environment variable set?); connecting without one")
		}
	}
	return c, nil
}

func (a *App) provisionKeys(repl *caddy.Replacer) error {
	seen := map[string]bool{}
	hasRS256 := false
	for i, kc := range a.SigningKeys {
		file, err := repl.ReplaceOrErr(kc.KeyFile, true, true)
		if err != nil {
			return fmt.Errorf("signing_key #%d: key_file: %w", i+1, err)
		}
		k, err := keys.Load(file, kc.Algorithm, kc.KeyID)
		if err != nil {
			return fmt.Errorf("signing_key #%d: %w", i+1, err)
		}
		if seen[k.ID] {
			return fmt.Errorf("signing_key #%d: key_id %q is used twice", i+1, k.ID)
		}
		seen[k.ID] = true
		k.Retired = kc.Retired
		hasRS256 = hasRS256 || (k.Algorithm == "RS256" && !k.Retired)
		a.fileKeys = append(a.fileKeys, k)
	}
	if len(a.fileKeys) > 0 && !hasRS256 {
		return errors.New("signing_key: at least one RS256 key that is not retired is required (OpenID Connect mandates RS256); add an RSA key with 'algorithm RS256'")
	}
	return nil
}

func (a *App) provisionClients(repl *caddy.Replacer) error {
	a.clients = make(map[string]*clients.Client, len(a.Clients))
	settings := a.clientSettings()
	for _, cc := range a.Clients {
		if cc.Secret != "" {
			var err error
			if cc.Secret, err = repl.ReplaceOrErr(cc.Secret, true, true); err != nil {
				return fmt.Errorf("client %s: client_secret: %w", cc.ID, err)
			}
		}
		if err := resolveClientKeys(repl, &cc); err != nil {
			return err
		}
		lifespans := a.Lifespans
		if cc.Lifespan != "" {
			set, ok := a.Lifespans.Custom[cc.Lifespan]
			if !ok {
				return fmt.Errorf("client %s: lifespan: no custom lifespan named %q; define it with 'custom %s { access_token 2h }' inside lifespans", cc.ID, cc.Lifespan, cc.Lifespan)
			}
			lifespans = mergeLifespans(set, a.Lifespans)
		}
		c, err := clients.NewFor(cc, lifespans.durations(), settings)
		if err != nil {
			return err
		}
		for _, w := range c.Warnings() {
			a.logger.Warn(w, zap.String("client_id", c.ID()))
		}
		if _, dup := a.clients[c.ID()]; dup {
			return fmt.Errorf("client %s: client_id is registered twice", c.ID())
		}
		if c.PlaintextSecret() {
			a.logger.Warn("client secret is stored as plaintext; store a digest instead (e.g. $pbkdf2-sha512$…)", zap.String("client_id", c.ID()))
		}
		a.clients[c.ID()] = c
	}
	return clients.CheckResourceServers(a.clients)
}

// resolveClientKeys replaces the placeholders ({env.*}, {file.*}) of a client's public keys
// (key and key_file), as of its client_secret, in a copy of the list.
func resolveClientKeys(repl *caddy.Replacer, cc *clients.Config) error {
	if len(cc.JWKS) == 0 {
		return nil
	}
	list := slices.Clone(cc.JWKS)
	for i := range list {
		k := &list[i]
		for _, f := range []struct {
			opt string
			v   *string
		}{{"key", &k.Key}, {"key_file", &k.KeyFile}} {
			if *f.v == "" {
				continue
			}
			r, err := repl.ReplaceOrErr(*f.v, true, true)
			if err != nil {
				return fmt.Errorf("client %s: public_key %s: %s: %w", cc.ID, k.KeyID, f.opt, err)
			}
			*f.v = r
		}
	}
	cc.JWKS = list
	return nil
}

func (a *App) provisionLifespans() error {
	check := func(name string, l *Lifespans) error {
		for opt, d := range map[string]caddy.Duration{"access_token": l.AccessToken, "authorize_code": l.AuthorizeCode, "id_token": l.IDToken, "refresh_token": l.RefreshToken, "device_code": l.DeviceCode} {
			if d < 0 {
				return fmt.Errorf("lifespans%s: %s must be positive", name, opt)
			}
		}
		return nil
	}
	if err := check("", &a.Lifespans); err != nil {
		return err
	}
	for n, set := range a.Lifespans.Custom {
		if n == "" {
			return errors.New("lifespans: custom lifespan with an empty name")
		}
		if set.Custom != nil {
			return fmt.Errorf("lifespans: custom %s: custom sets do not nest", n)
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
		return nil, errors.New("issuer is required, e.g. 'issuer https://auth.example.com'")
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("issuer %q must be an absolute URL such as https://auth.example.com", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("issuer %q may not carry a query, a fragment or user info", s)
	}
	if u.Scheme == "http" && !clients.IsLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("issuer %q must use https (http is only allowed for localhost and loopback addresses)", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// Start opens (or shares) the store and prepares secrets, keys and the fosite composition. On
// any error it lets the store go again.
func (a *App) Start() error {
	ctx := a.ctx // startup: no request; the config's context
	b, loaded, err := acquireBackend(ctx, a.spec)
	if err != nil {
		if a.spec.pg != nil {
			// a node does not start without its database: it would answer every request 503
			return fmt.Errorf("opening store %s: %w (is the database running and reachable from this node? a node starts only with its database)", a.storeName(), err)
		}
		return fmt.Errorf("opening store %s: %w (if another Caddy process uses this directory, stop it or use 'caddy reload')", a.dir, err)
	}
	if loaded && !a.spec.sameSettings(b) {
		a.logger.Warn("storage settings changed while the store is open; they take effect at the next start", zap.String("storage", a.storeName()))
	}
	st, err := a.prepare(ctx, b)
	if err != nil {
		return errors.Join(err, releaseBackend(a.spec.key))
	}
	if err := a.startPeople(ctx, b, st); err != nil {
		return errors.Join(err, releaseBackend(a.spec.key))
	}
	a.watchUsers(st)
	a.checkAtStart()
	a.state.Store(st)
	st.provider.StartBackchannelLogout()
	a.logger.Info("oidc provider started", zap.String("issuer", a.issuer), zap.String("storage", a.storeName()), zap.Int("clients", len(a.clients)))
	return nil
}

// storeName names the store in logs and errors: the Badger directory, or the PostgreSQL
// database's identity (never its password).
func (a *App) storeName() string {
	if a.spec.pg != nil {
		return a.spec.pg.Identity()
	}
	return a.dir
}

// prepare builds the running state on an open backend.
func (a *App) prepare(ctx context.Context, b *backend) (*runtimeState, error) {
	secret := a.hmacSecret
	if secret == nil {
		var err error
		secret, err = b.kv.GetOrCreate(ctx, keyHMACSecret, func() ([]byte, error) {
			s := make([]byte, 64)
			_, _ = rand.Read(s) // crypto/rand.Read never fails (it crashes the program instead)
			return s, nil
		})
		if err != nil {
			return nil, fmt.Errorf("hmac secret: %w", err)
		}
	}
	signing := a.fileKeys
	if len(signing) > 0 {
		generated, err := a.retiredGeneratedKey(ctx, b.kv)
		if err != nil {
			return nil, err
		}
		if generated != nil {
			signing = append(slices.Clip(signing), generated)
		}
	} else {
		pemData, err := b.kv.GetOrCreate(ctx, keySigningKey, keys.GenerateDefaultPEM)
		if err != nil {
			return nil, fmt.Errorf("default signing key: %w", err)
		}
		priv, err := keys.ParsePEM(pemData)
		if err != nil {
			return nil, fmt.Errorf("default signing key in store: %w", err)
		}
		k, err := keys.New(priv, "RS256", "")
		if err != nil {
			return nil, fmt.Errorf("default signing key: %w", err)
		}
		signing = []*keys.Key{k}
	}

	current := make(map[string]digest.Fingerprint, len(a.clients))
	for id, c := range a.clients {
		current[id] = c.Fingerprint()
	}
	b.secrets.Retain(current)

	var ppl oauth.People
	if a.directory != nil {
		ppl = people{a.directory}
	}
	p := oauth.New(oauth.Config{
		People:              ppl,
		RequirePAR:          a.RequirePushedAuthorizationRequests,
		ScopesSupported:     claims.ScopesSupported,
		ClaimsSupported:     claims.Supported,
		EnforcePKCE:         a.EnforcePKCE,
		EnablePKCEPlain:     a.EnablePKCEPlainChallenge,
		MinParameterEntropy: a.MinimumParameterEntropy,
		ClaimsPolicies:      a.idTokenClaimsPolicies(),
		Issuer:              a.issuer,
		Lifespans:           a.Lifespans.durations(),
		HMACSecret:          secret,
		KV:                  b.kv,
		Clients:             a.client,
		Authenticator: &clients.Authenticator{
			Lookup:    a.client,
			Secrets:   b.secrets,
			Limits:    b.limits,
			Logger:    a.logger,
			OnFailure: a.metrics.authFailed,
			Audiences: oauth.AssertionAudiences(a.issuer),
			Replay:    b.kv,
		},
		Cutoffs:        b.cutoffs,
		OnTokenIssued:  a.metrics.tokenIssued,
		OnTokenRefused: a.metrics.tokenRefused,
		OnTokenRevoked: a.metrics.tokenRevoked,
		ClientIP:       ClientIP,
		Keys:           signing,
		Tokens:         b.tokens,
		Logger:         a.logger,

		SessionLifespan:     a.sessionLifespan(),
		BackchannelRetries:  backchannelRetries(a.logger),
		OnBackchannelLogout: a.metrics.backchannelLogout,

		// what the gate checks JWT access tokens with
		Revocations:                b.revocations,
		LongestAccessTokenLifespan: a.longestAccessTokenLifespan(),
	})
	return &runtimeState{backend: b, provider: p, ports: a.listenPorts(), secret: secret}, nil
}

// Stop withdraws the running state and releases the store; the database closes when no config
// uses it any more.
func (a *App) Stop() error { return a.stop() }

// Cleanup does what Stop does if Stop did not run (a config whose other apps failed to start);
// it implements caddy.CleanerUpper.
func (a *App) Cleanup() error {
	err := a.stop()
	if a.ldapDirectory != nil {
		_ = a.ldapDirectory.Close() // this config's service connections
	}
	return err
}

// stop withdraws the running state, if any, ends its users file's watch and gives back its
// reference to the store. Only the caller that withdraws the state releases it, so it runs
// once however often it is called.
func (a *App) stop() error {
	st := a.state.Swap(nil)
	if st == nil {
		return nil
	}
	if st.stopWatch != nil {
		close(st.stopWatch)
	}
	st.guard.Close() // a shared store's ban feed
	st.provider.StopBackchannelLogout()
	return releaseBackend(a.spec.key)
}

// keyGeneratedRetiredAt records when configured signing keys first replaced the generated key.
var keyGeneratedRetiredAt = []byte("meta/signing_key/default_retired_at")

// retiredGeneratedKey is the generated default key, retired, while the tokens it signed may
// still be in use: when signing keys are configured in a store that holds a generated key, that
// key stays in the JWKS (signing nothing) for the longest access-token or ID-token lifespan after
// the first start with configured keys, so moving from the generated key to key files is a
// rotation like any other. nil when there is none or its time has passed.
func (a *App) retiredGeneratedKey(ctx context.Context, kv store.KV) (*keys.Key, error) {
	pemData, err := kv.Get(ctx, keySigningKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("generated signing key: %w", err)
	}
	stamp, err := kv.GetOrCreate(ctx, keyGeneratedRetiredAt, func() ([]byte, error) {
		return []byte(time.Now().UTC().Format(time.RFC3339)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("generated signing key: %w", err)
	}
	since, err := time.Parse(time.RFC3339, string(stamp))
	if err != nil {
		return nil, fmt.Errorf("generated signing key: retirement time %q in the store: %w", stamp, err)
	}
	if time.Since(since) > a.longestSignedLifespan() {
		return nil, nil
	}
	priv, err := keys.ParsePEM(pemData)
	if err != nil {
		return nil, fmt.Errorf("generated signing key in store: %w", err)
	}
	k, err := keys.New(priv, "RS256", "")
	if err != nil {
		return nil, fmt.Errorf("generated signing key: %w", err)
	}
	k.Retired = true
	return k, nil
}

// longestSignedLifespan is the longest lifespan of a signed token (access token, ID token),
// over the global lifespans and the custom sets.
func (a *App) longestSignedLifespan() time.Duration {
	longest := max(time.Duration(a.Lifespans.AccessToken), time.Duration(a.Lifespans.IDToken))
	for _, set := range a.Lifespans.Custom {
		longest = max(longest, time.Duration(set.AccessToken), time.Duration(set.IDToken))
	}
	return longest
}

// client returns the registered client with the id.
func (a *App) client(id string) (*clients.Client, bool) {
	c, ok := a.clients[id]
	return c, ok
}

// running returns the started state, or nil while the store is not open.
func (a *App) running() *runtimeState { return a.state.Load() }

// durations are the lifespans as the oauth and clients packages take them.
func (l Lifespans) durations() clients.Lifespans {
	return clients.Lifespans{
		AccessToken:   time.Duration(l.AccessToken),
		AuthorizeCode: time.Duration(l.AuthorizeCode),
		IDToken:       time.Duration(l.IDToken),
		RefreshToken:  time.Duration(l.RefreshToken),
		DeviceCode:    time.Duration(l.DeviceCode),
	}
}

// longestAccessTokenLifespan is the longest any registered client's access tokens live: how long
// the gate must remember a JWT access token revoked early.
func (a *App) longestAccessTokenLifespan() time.Duration {
	longest := time.Duration(a.Lifespans.AccessToken)
	for _, c := range a.clients {
		longest = max(longest, c.GetEffectiveLifespan("", fosite.AccessToken, longest))
	}
	return longest
}

func mergeLifespans(over, base Lifespans) Lifespans {
	if over.AccessToken != 0 {
		base.AccessToken = over.AccessToken
	}
	if over.AuthorizeCode != 0 {
		base.AuthorizeCode = over.AuthorizeCode
	}
	if over.IDToken != 0 {
		base.IDToken = over.IDToken
	}
	if over.RefreshToken != 0 {
		base.RefreshToken = over.RefreshToken
	}
	if over.DeviceCode != 0 {
		base.DeviceCode = over.DeviceCode
	}
	base.Custom = nil
	return base
}

var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
