// Package webauthn is security keys and passkeys (WebAuthn) on github.com/go-webauthn/webauthn:
// registration and login ceremonies for a user who is already identified by a password (a second
// factor), and passkey sign-in (passkey.go): a discoverable credential, user verification
// required, that names its user itself. Credentials and the ceremonies' state are kept in the
// store.
//
// The user handle (the WebAuthn user id) of a user is an HMAC of the username under a key of the
// provider, so nothing extra is stored for it and it reveals nothing about the user. Ceremonies
// are bound to the user and to a key the portal gives (tied to the browser session), expire
// after the configured timeout, and are consumed by the first attempt to finish them.
package webauthn

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	gowebauthn "github.com/go-webauthn/webauthn/webauthn"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// Config is the WebAuthn relying party's settings.
type Config struct {
	// RPID is the relying party id: the cookie domain or the portal host, e.g. "example.com".
	// Credentials are bound to it; changing it makes every registered credential unusable.
	RPID string
	// RPDisplayName names the service in the browser's and the authenticator's prompts.
	// Default: "Portcullis".
	RPDisplayName string
	// RPOrigins are the origins the ceremonies may run on, e.g. ["https://auth.example.com"]:
	// https (or http on localhost), on RPID or a subdomain of it.
	RPOrigins []string
	// Timeout is how long the user has to answer a ceremony. Default: 60s; at least 10s, at most
	// 10m.
	Timeout time.Duration
	// UserVerification is whether the authenticator must verify the user (PIN, biometrics):
	// "discouraged", "preferred" (default) or "required".
	UserVerification string
}

// Credential is what a page shows about a registered security key or passkey.
type Credential struct {
	// ID is the credential id, base64url without padding; Remove takes it.
	ID string
	// Name is the name the user gave it.
	Name string
	// Created is when it was registered.
	Created time.Time
	// LastUsed is when it was last used to sign in; zero if never.
	LastUsed time.Time
	// Discoverable is true for a resident (client-side discoverable) key: as the browser
	// reported it (credProps), or asked for as "Add a passkey" asks, or proven by a passkey
	// sign-in.
	Discoverable bool
	// Passkey is true for a passkey: discoverable, and the authenticator verified the user (a
	// PIN or biometric) at registration or at a passkey sign-in. Only a passkey is shown as
	// one; any of the user's credentials the browser discovers may sign in with user
	// verification (PasskeyLogin).
	Passkey bool
	// AAGUID identifies the authenticator's model (all zeros when it does not tell).
	AAGUID string
}

// ErrNoDevice is the answer for a user who has no security key or passkey, or not the one named.
var ErrNoDevice = errors.New("webauthn: no security key or passkey")

// ErrNoCeremony is the answer to a Finish call without a ceremony begun for the user and key,
// or after it expired or was already finished.
var ErrNoCeremony = errors.New("webauthn: no ceremony in progress, or it expired")

// ErrVerification is the answer to an authenticator response that did not verify; the error
// that wraps it says why, for the logs.
var ErrVerification = errors.New("webauthn: the authenticator's answer did not verify")

// DefaultName is the name of a credential registered without one.
const DefaultName = "Security key"

// MaxNameLength is the longest credential name kept, in characters.
const MaxNameLength = 64

// Key prefixes in the store. Usernames and credential ids are base64url-encoded in keys, so no
// username (even one holding '/') can reach into another user's keys.
const (
	credentialPrefix = "mfa/webauthn/cred/"     // + user + "/" + credential id: credentialRecord
	ownerPrefix      = "mfa/webauthn/owner/"    // + credential id: the owner's username
	ceremonyPrefix   = "mfa/webauthn/ceremony/" // + kind + "/" + user + "/" + sha256(key): ceremonyRecord
	takenPrefix      = "mfa/webauthn/taken/"    // + sha256(ceremony record): the claim of the node that took it
)

// takenMargin is how much longer than the ceremony timeout a ceremony's claim is kept, for
// clocks that differ between nodes.
const takenMargin = time.Minute

const (
	kindRegister = "register"
	kindLogin    = "login"
	kindPasskey  = "passkey" // a passkey sign-in: no user yet, the ceremony's user is ""
)

// lockStripes is the number of mutexes that serialise the finishing of a user's ceremonies.
const lockStripes = 64

// WithDefaults fills the defaults and checks the values, naming the option at fault.
func (c Config) WithDefaults() (Config, error) {
	c.RPID = strings.ToLower(strings.TrimSpace(c.RPID))
	if c.RPDisplayName == "" {
		c.RPDisplayName = "Portcullis"
	}
	if c.Timeout == 0 {
		c.Timeout = 60 * time.Second
	}
	if c.UserVerification == "" {
		c.UserVerification = string(protocol.VerificationPreferred)
	}
	c.UserVerification = strings.ToLower(c.UserVerification)
	switch {
	case c.RPID == "":
		return c, errors.New("webauthn: rp_id is required: the cookie domain or the portal's host, e.g. example.com")
	case c.Timeout < 10*time.Second || c.Timeout > 10*time.Minute:
		return c, fmt.Errorf("webauthn: timeout %s: use at least 10s and at most 10m", c.Timeout)
	case !slices.Contains([]string{"discouraged", "preferred", "required"}, c.UserVerification):
		return c, fmt.Errorf("webauthn: user_verification %q: use discouraged, preferred or required", c.UserVerification)
	case len(c.RPOrigins) == 0:
		return c, errors.New("webauthn: rp_origins is required: the portal's origins, e.g. https://auth.example.com")
	}
	if err := protocol.ValidateRPID(c.RPID); err != nil || strings.ContainsAny(c.RPID, ":/") {
		return c, fmt.Errorf("webauthn: rp_id %q: use a domain name without scheme or port, e.g. example.com", c.RPID)
	}
	c.RPOrigins = slices.Clone(c.RPOrigins)
	for i, o := range c.RPOrigins {
		origin, err := checkOrigin(o, c.RPID)
		if err != nil {
			return c, fmt.Errorf("webauthn: rp_origins %q: %w", o, err)
		}
		c.RPOrigins[i] = origin
	}
	return c, nil
}

// checkOrigin checks that origin is one a browser would run a ceremony for rpID on, and returns
// it in canonical form.
func checkOrigin(origin, rpID string) (string, error) {
	u, err := url.Parse(origin)
	if err != nil {
		return "", errors.New("not a URL")
	}
	host := strings.ToLower(u.Hostname())
	switch {
	case u.Scheme != "https" && !(u.Scheme == "http" && (host == "localhost" || strings.HasSuffix(host, ".localhost"))):
		return "", errors.New("use https (http only for localhost and *.localhost, which browsers treat as secure)")
	case host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return "", errors.New("use scheme://host[:port] only, e.g. https://auth.example.com")
	case host != rpID && !strings.HasSuffix(host, "."+rpID):
		return "", fmt.Errorf("the host is neither rp_id %q nor a subdomain of it", rpID)
	}
	return u.Scheme + "://" + strings.ToLower(u.Host), nil
}

// Devices keeps each user's security keys and passkeys in the store and runs their ceremonies.
// It is safe for concurrent use.
type Devices struct {
	cfg       Config
	wa        *gowebauthn.WebAuthn
	kv        store.KV
	handleKey []byte
	now       func() time.Time
	lockSeed  maphash.Seed
	userLocks [lockStripes]sync.Mutex
}

// credentialRecord is a credential as stored: go-webauthn's credential (public key, sign count,
// flags, authenticator attachment, attestation) and what the user sees of it.
type credentialRecord struct {
	Credential   gowebauthn.Credential `json:"credential"`
	Name         string                `json:"name"`
	Created      time.Time             `json:"created"`
	LastUsed     time.Time             `json:"last_used,omitzero"`
	Discoverable bool                  `json:"discoverable,omitempty"`
	Passkey      bool                  `json:"passkey,omitempty"`
}

// ceremonyRecord is a ceremony begun and not yet finished.
type ceremonyRecord struct {
	Session gowebauthn.SessionData `json:"session"`
	Expires time.Time              `json:"expires"`
	// Passkey marks a registration begun as "Add a passkey" (resident key and user
	// verification required).
	Passkey bool `json:"passkey,omitempty"`
}

// user is a user as go-webauthn sees one.
type user struct {
	id          []byte
	name        string
	displayName string
	credentials []gowebauthn.Credential
}

// WebAuthnID is the user handle: see Devices.userHandle.
func (u *user) WebAuthnID() []byte { return u.id }

// WebAuthnName is the username.
func (u *user) WebAuthnName() string { return u.name }

// WebAuthnDisplayName is the name the authenticator shows (the username when none is given).
func (u *user) WebAuthnDisplayName() string { return u.displayName }

// WebAuthnCredentials are the user's registered credentials.
func (u *user) WebAuthnCredentials() []gowebauthn.Credential { return u.credentials }

// New keeps security keys and passkeys in kv for the relying party cfg describes. The user
// handle of a user is HMAC-SHA256(userHandleKey, username), so userHandleKey (at least 32
// bytes, secret, derived from the provider's secret) must stay the same for the registered
// passkeys to keep working.
func New(cfg Config, kv store.KV, userHandleKey []byte) (*Devices, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if kv == nil {
		return nil, errors.New("webauthn: devices need a store")
	}
	if len(userHandleKey) < 32 {
		return nil, errors.New("webauthn: the user handle key must have at least 32 bytes")
	}
	uv := protocol.UserVerificationRequirement(cfg.UserVerification)
	wa, err := gowebauthn.New(&gowebauthn.Config{
		RPID:                   cfg.RPID,
		RPDisplayName:          cfg.RPDisplayName,
		RPOrigins:              cfg.RPOrigins,
		AttestationPreference:  protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{UserVerification: uv},
		Timeouts: gowebauthn.TimeoutsConfig{
			// Devices enforces the timeout itself, on its clock.
			Login:        gowebauthn.TimeoutConfig{Timeout: cfg.Timeout, TimeoutUVD: cfg.Timeout},
			Registration: gowebauthn.TimeoutConfig{Timeout: cfg.Timeout, TimeoutUVD: cfg.Timeout},
		},
		// Some clients (password managers among them) return extension outputs nobody asked
		// for; none of them is acted upon but credProps, which is requested.
		ExtensionsUnsolicitedOutputPolicy: protocol.UnsolicitedOutputPolicyIgnore,
	})
	if err != nil {
		return nil, fmt.Errorf("webauthn: %w", err)
	}
	return &Devices{
		cfg: cfg, wa: wa, kv: kv, handleKey: slices.Clone(userHandleKey), now: time.Now,
		lockSeed: maphash.MakeSeed(),
	}, nil
}

// List returns the user's security keys and passkeys, oldest first.
func (d *Devices) List(ctx context.Context, username string) ([]Credential, error) {
	if err := checkUser(username); err != nil {
		return nil, err
	}
	recs, err := d.records(ctx, username)
	if err != nil {
		return nil, err
	}
	out := make([]Credential, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.public())
	}
	return out, nil
}

// Remove deletes the user's credential with id (as List gives it), on disk when it returns;
// an id the user does not have is ErrNoDevice.
func (d *Devices) Remove(ctx context.Context, username, id string) error {
	if err := checkUser(username); err != nil {
		return err
	}
	rawID, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(rawID) == 0 {
		return ErrNoDevice
	}
	mu := d.lock(username)
	mu.Lock()
	defer mu.Unlock()

	key := credentialKey(username, rawID)
	if _, err := d.kv.Get(ctx, key); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrNoDevice
		}
		return fmt.Errorf("webauthn: reading the credential: %w", err)
	}
	keys := [][]byte{key}
	if owner, err := d.kv.Get(ctx, ownerKey(rawID)); err == nil && string(owner) == username {
		keys = append(keys, ownerKey(rawID))
	}
	if err := d.kv.Delete(ctx, keys...); err != nil {
		return fmt.Errorf("webauthn: removing the credential: %w", err)
	}
	if err := d.kv.PutSync(ctx); err != nil {
		return fmt.Errorf("webauthn: removing the credential: %w", err)
	}
	return nil
}

// BeginRegistration begins registering a security key or passkey for the user, the ceremony
// bound to ceremonyKey. It returns the JSON of the PublicKeyCredentialCreationOptions, for the
// browser's PublicKeyCredential.parseCreationOptionsFromJSON(): the user's credentials are
// excluded, a resident key (passkey) is preferred, user verification is as configured, no
// attestation is asked for.
func (d *Devices) BeginRegistration(ctx context.Context, username, displayName, ceremonyKey string) ([]byte, error) {
	return d.beginRegistration(ctx, username, displayName, ceremonyKey, false)
}

// BeginPasskeyRegistration is BeginRegistration for a passkey ("Add a passkey"): a resident key
// and user verification are required, whatever Config.UserVerification says, so the credential
// can sign in alone (PasskeyLogin). FinishRegistration finishes it.
func (d *Devices) BeginPasskeyRegistration(ctx context.Context, username, displayName, ceremonyKey string) ([]byte, error) {
	return d.beginRegistration(ctx, username, displayName, ceremonyKey, true)
}

func (d *Devices) beginRegistration(ctx context.Context, username, displayName, ceremonyKey string, passkey bool) ([]byte, error) {
	if err := checkUser(username); err != nil {
		return nil, err
	}
	if ceremonyKey == "" {
		return nil, errors.New("webauthn: beginning a registration: empty ceremony key")
	}
	recs, err := d.records(ctx, username)
	if err != nil {
		return nil, err
	}
	u := d.user(username, displayName, recs)
	opts := []gowebauthn.RegistrationOption{
		gowebauthn.WithExclusions(gowebauthn.Credentials(u.credentials).CredentialDescriptors()),
		gowebauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementPreferred),
		gowebauthn.WithConveyancePreference(protocol.PreferNoAttestation),
		gowebauthn.WithExtensions(gowebauthn.WithExtensionCredProps()),
	}
	if passkey {
		opts = append(opts, gowebauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			RequireResidentKey: protocol.ResidentKeyRequired(),
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			UserVerification:   protocol.VerificationRequired,
		}))
	}
	creation, session, err := d.wa.BeginRegistration(u, opts...)
	if err != nil {
		return nil, fmt.Errorf("webauthn: beginning a registration: %w", err)
	}
	options, err := json.Marshal(creation.Response)
	if err != nil {
		return nil, fmt.Errorf("webauthn: encoding the registration options: %w", err)
	}
	if err := d.saveCeremony(ctx, username, ceremonyKey, kindRegister, session, passkey); err != nil {
		return nil, err
	}
	return options, nil
}

// FinishRegistration verifies the browser's answer to the registration begun with ceremonyKey
// (response is the JSON of PublicKeyCredential.toJSON()) and saves the credential, on disk when
// it returns, under name (trimmed, at most MaxNameLength characters, DefaultName when empty).
// A passkey ceremony (BeginPasskeyRegistration) refuses an answer without user verification.
// The ceremony is consumed whatever the outcome. It returns ErrNoCeremony, an error wrapping
// ErrVerification, or the new credential.
func (d *Devices) FinishRegistration(ctx context.Context, username, displayName, ceremonyKey, name string, response []byte) (*Credential, error) {
	if err := checkUser(username); err != nil {
		return nil, err
	}
	mu := d.lock(username)
	mu.Lock()
	defer mu.Unlock()

	ceremony, err := d.takeCeremony(ctx, username, ceremonyKey, kindRegister)
	if err != nil {
		return nil, err
	}
	session := &ceremony.Session
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return nil, verificationError("parsing the registration response", err)
	}
	recs, err := d.records(ctx, username)
	if err != nil {
		return nil, err
	}
	cred, err := d.wa.CreateCredential(d.user(username, displayName, recs), *session, parsed)
	if err != nil {
		return nil, verificationError("verifying the registration", err)
	}
	switch owner, err := d.kv.Get(ctx, ownerKey(cred.ID)); {
	case err == nil && string(owner) == username:
		return nil, fmt.Errorf("%w: the credential is already registered", ErrVerification)
	case err == nil:
		return nil, fmt.Errorf("%w: the credential is registered to another user", ErrVerification)
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("webauthn: looking the credential up: %w", err)
	}
	if ceremony.Passkey && !parsed.Response.AttestationObject.AuthData.Flags.HasUserVerified() {
		return nil, fmt.Errorf("%w: a passkey's registration without user verification", ErrVerification)
	}
	// discoverable: as credProps reports it; without a report, a passkey ceremony required a
	// resident key, which an authenticator that answered must have made
	discoverable := ceremony.Passkey
	if cred.Extensions.RK != nil {
		discoverable = *cred.Extensions.RK
	}
	rec := credentialRecord{
		Credential:   *cred,
		Name:         cleanName(name),
		Created:      d.now(),
		Discoverable: discoverable,
		Passkey:      discoverable && parsed.Response.AttestationObject.AuthData.Flags.HasUserVerified(),
	}
	value, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("webauthn: encoding the credential: %w", err)
	}
	err = d.kv.PutSync(ctx,
		store.Entry{Key: credentialKey(username, cred.ID), Value: value},
		store.Entry{Key: ownerKey(cred.ID), Value: []byte(username)},
	)
	if err != nil {
		return nil, fmt.Errorf("webauthn: saving the credential: %w", err)
	}
	c := rec.public()
	return &c, nil
}

// BeginLogin begins a login with one of the user's credentials, the ceremony bound to
// ceremonyKey. It returns ErrNoDevice, or the JSON of the PublicKeyCredentialRequestOptions for
// the browser's PublicKeyCredential.parseRequestOptionsFromJSON(), allowing the user's
// credentials.
func (d *Devices) BeginLogin(ctx context.Context, username, ceremonyKey string) ([]byte, error) {
	if err := checkUser(username); err != nil {
		return nil, err
	}
	if ceremonyKey == "" {
		return nil, errors.New("webauthn: beginning a login: empty ceremony key")
	}
	recs, err := d.records(ctx, username)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, ErrNoDevice
	}
	assertion, session, err := d.wa.BeginLogin(d.user(username, "", recs))
	if err != nil {
		return nil, fmt.Errorf("webauthn: beginning a login: %w", err)
	}
	options, err := json.Marshal(assertion.Response)
	if err != nil {
		return nil, fmt.Errorf("webauthn: encoding the login options: %w", err)
	}
	if err := d.saveCeremony(ctx, username, ceremonyKey, kindLogin, session, false); err != nil {
		return nil, err
	}
	return options, nil
}

// FinishLogin verifies the browser's answer to the login begun with ceremonyKey (response is
// the JSON of PublicKeyCredential.toJSON()). The ceremony is consumed whatever the outcome. It
// returns ErrNoCeremony, ErrNoDevice, an error wrapping ErrVerification (a signature that does
// not verify, another user's credential, a sign count that went backwards as a cloned
// authenticator's would, ...), or nil once the credential's sign count and last use are stored.
func (d *Devices) FinishLogin(ctx context.Context, username, ceremonyKey string, response []byte) error {
	if err := checkUser(username); err != nil {
		return err
	}
	mu := d.lock(username)
	mu.Lock()
	defer mu.Unlock()

	ceremony, err := d.takeCeremony(ctx, username, ceremonyKey, kindLogin)
	if err != nil {
		return err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return verificationError("parsing the login response", err)
	}
	recs, err := d.records(ctx, username)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return ErrNoDevice
	}
	cred, err := d.wa.ValidateLogin(d.user(username, "", recs), ceremony.Session, parsed)
	if err != nil {
		return verificationError("verifying the login", err)
	}
	if cred.Authenticator.CloneWarning {
		return fmt.Errorf("%w: the sign count did not increase: the authenticator may have been cloned", ErrVerification)
	}
	i := slices.IndexFunc(recs, func(r *credentialRecord) bool { return string(r.Credential.ID) == string(cred.ID) })
	if i < 0 {
		return fmt.Errorf("%w: the credential is not the user's", ErrVerification)
	}
	rec := recs[i]
	rec.Credential, rec.LastUsed = *cred, d.now()
	return d.putRecord(ctx, username, rec)
}

// putRecord stores rec, the user's credential, after a use.
func (d *Devices) putRecord(ctx context.Context, username string, rec *credentialRecord) error {
	value, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("webauthn: encoding the credential: %w", err)
	}
	if err := d.kv.Put(ctx, store.Entry{Key: credentialKey(username, rec.Credential.ID), Value: value}); err != nil {
		return fmt.Errorf("webauthn: recording the credential's use: %w", err)
	}
	return nil
}

// records reads the user's credentials, oldest first.
func (d *Devices) records(ctx context.Context, username string) ([]*credentialRecord, error) {
	keys, err := d.kv.Keys(ctx, credentialPrefixOf(username))
	if err != nil {
		return nil, fmt.Errorf("webauthn: listing the credentials: %w", err)
	}
	recs := make([]*credentialRecord, 0, len(keys))
	for _, k := range keys {
		raw, err := d.kv.Get(ctx, k)
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue // removed since the listing
		case err != nil:
			return nil, fmt.Errorf("webauthn: reading a credential: %w", err)
		}
		var r credentialRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("webauthn: decoding a credential: %w", err)
		}
		recs = append(recs, &r)
	}
	slices.SortStableFunc(recs, func(a, b *credentialRecord) int { return a.Created.Compare(b.Created) })
	return recs, nil
}

// user is username as go-webauthn sees it, with the credentials of recs.
func (d *Devices) user(username, displayName string, recs []*credentialRecord) *user {
	if displayName == "" {
		displayName = username
	}
	creds := make([]gowebauthn.Credential, 0, len(recs))
	for _, r := range recs {
		creds = append(creds, r.Credential)
	}
	return &user{id: d.userHandle(username), name: username, displayName: displayName, credentials: creds}
}

// userHandle is the user's WebAuthn user id: HMAC-SHA256(userHandleKey, username), 32 bytes.
func (d *Devices) userHandle(username string) []byte {
	m := hmac.New(sha256.New, d.handleKey)
	m.Write([]byte(username))
	return m.Sum(nil)[:32]
}

// saveCeremony keeps session for the user's ceremony of kind bound to ceremonyKey, for the
// configured timeout; passkey marks a passkey's registration.
func (d *Devices) saveCeremony(ctx context.Context, username, ceremonyKey, kind string, session *gowebauthn.SessionData, passkey bool) error {
	value, err := json.Marshal(ceremonyRecord{Session: *session, Expires: d.now().Add(d.cfg.Timeout), Passkey: passkey})
	if err != nil {
		return fmt.Errorf("webauthn: encoding the %s ceremony: %w", kind, err)
	}
	err = d.kv.Put(ctx, store.Entry{Key: ceremonyKeyOf(username, ceremonyKey, kind), Value: value, TTL: d.cfg.Timeout})
	if err != nil {
		return fmt.Errorf("webauthn: saving the %s ceremony: %w", kind, err)
	}
	return nil
}

// takeCeremony reads and deletes the user's ceremony of kind bound to ceremonyKey. A ceremony
// is taken at most once, even by requests finishing it on several nodes at once: the caller
// holds the user's lock in this process, and before deleting the ceremony takeCeremony claims it
// in the store with store.Claim (atomic across nodes sharing the store), keyed by a digest of the
// record (which holds the ceremony's random challenge); a request whose claim is not the stored
// one gets ErrNoCeremony. The claim outlives the ceremony's timeout.
func (d *Devices) takeCeremony(ctx context.Context, username, ceremonyKey, kind string) (*ceremonyRecord, error) {
	if ceremonyKey == "" {
		return nil, ErrNoCeremony
	}
	key := ceremonyKeyOf(username, ceremonyKey, kind)
	raw, err := d.kv.Get(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, ErrNoCeremony
	case err != nil:
		return nil, fmt.Errorf("webauthn: reading the %s ceremony: %w", kind, err)
	}
	sum := sha256.Sum256(raw)
	claim := []byte(takenPrefix + enc(sum[:]))
	_, claimed, err := store.Claim(ctx, d.kv, claim, d.cfg.Timeout+takenMargin)
	if err != nil {
		return nil, fmt.Errorf("webauthn: claiming the %s ceremony: %w", kind, err)
	}
	if !claimed {
		return nil, ErrNoCeremony // another request, maybe on another node, took it
	}
	// taken: finish consuming it even if the caller has gone
	ctx = context.WithoutCancel(ctx)
	if err := d.kv.Delete(ctx, key); err != nil {
		return nil, fmt.Errorf("webauthn: consuming the %s ceremony: %w", kind, err)
	}
	var rec ceremonyRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("webauthn: decoding the %s ceremony: %w", kind, err)
	}
	if !d.now().Before(rec.Expires) {
		return nil, ErrNoCeremony
	}
	return &rec, nil
}

// lock returns the mutex that serialises the finishing of the user's ceremonies.
func (d *Devices) lock(username string) *sync.Mutex {
	return &d.userLocks[maphash.String(d.lockSeed, username)%lockStripes]
}

// public is what a page shows of r.
func (r *credentialRecord) public() Credential {
	return Credential{
		ID:           base64.RawURLEncoding.EncodeToString(r.Credential.ID),
		Name:         r.Name,
		Created:      r.Created,
		LastUsed:     r.LastUsed,
		Discoverable: r.Discoverable,
		Passkey:      r.Passkey,
		AAGUID:       formatAAGUID(r.Credential.Authenticator.AAGUID),
	}
}

// formatAAGUID writes a 16-byte AAGUID as a UUID.
func formatAAGUID(b []byte) string {
	if len(b) != 16 {
		return hex.EncodeToString(b)
	}
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// cleanName is name without control characters or surrounding space, at most MaxNameLength
// characters, or DefaultName.
func cleanName(name string) string {
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if utf8.RuneCountInString(name) > MaxNameLength {
		name = strings.TrimSpace(string([]rune(name)[:MaxNameLength]))
	}
	if name == "" {
		return DefaultName
	}
	return name
}

// verificationError wraps err, a verification failure, in ErrVerification with what was being
// done and the library's developer information (never a secret: challenges are single-use and
// already consumed).
func verificationError(doing string, err error) error {
	var perr *protocol.Error
	if errors.As(err, &perr) && perr.DevInfo != "" && perr.DevInfo != "<nil>" {
		info := strings.ReplaceAll(strings.TrimSpace(perr.DevInfo), "\n", "; ")
		return fmt.Errorf("%w: %s: %w (%s)", ErrVerification, doing, err, info)
	}
	return fmt.Errorf("%w: %s: %w", ErrVerification, doing, err)
}

func checkUser(username string) error {
	if username == "" {
		return errors.New("webauthn: empty username")
	}
	return nil
}

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func credentialPrefixOf(username string) []byte {
	return []byte(credentialPrefix + enc([]byte(username)) + "/")
}

func credentialKey(username string, id []byte) []byte {
	return append(credentialPrefixOf(username), enc(id)...)
}

func ownerKey(id []byte) []byte { return []byte(ownerPrefix + enc(id)) }

// ceremonyKeyOf is the store key of a ceremony: the portal's key is hashed, since it may be a
// session secret.
func ceremonyKeyOf(username, ceremonyKey, kind string) []byte {
	sum := sha256.Sum256([]byte(ceremonyKey))
	return []byte(ceremonyPrefix + kind + "/" + enc([]byte(username)) + "/" + enc(sum[:]))
}
