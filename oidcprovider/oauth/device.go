package oauth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/clientaddr"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// This file is the device authorization grant (RFC 8628) on the protocol's side: the device
// authorization endpoint, which gives a device its device code and the person's user code, the
// pending grant's records and their state machine in the store, and the token endpoint's
// handler of the device_code grant. device_browser.go is the /device page's side: the person
// types the user code, signs in and approves or refuses.
//
// The state of one device code lives under keys named by its signature (the HMAC part of the
// code, never the code itself):
//
//	device/<sig>           the request: client, scopes, audience, expiry (kept past the expiry
//	                       for deviceGrace, so a late poll gets expired_token)
//	device-user/<digest>   the user code's keyed digest → <sig>, created once (a collision of
//	                       two live user codes picks another), until the expiry
//	device-decision/<sig>  the person's approval or refusal, created once across nodes: of two
//	                       racing answers exactly one stands
//	device-redeemed/<sig>  claimed (store.Claim) by the one token request that gets the tokens
//	device-poll/<sig>      claimed by each poll for the polling interval: a poll that finds it
//	                       taken is too fast (slow_down)
//	device-interval/<sig>  the polling interval in seconds once a slow_down raised it

// Paths of the device flow, relative to the issuer.
const (
	// PathDeviceAuthorization is the device authorization endpoint (RFC 8628 §3.1).
	PathDeviceAuthorization = "/api/oidc/device-authorization"
	// PathDevice is the page where the person types the user code (the verification_uri).
	PathDevice = "/device"
)

const (
	// kindDevice names device codes in their prefix (portcullis_dc_…) and in the browser
	// session's index (bsess/<ref>/dc/<sig>).
	kindDevice = "dc"
	// defaultDeviceCodeLifespan is a device code's life when neither the client nor the
	// provider sets lifespans.device_code.
	defaultDeviceCodeLifespan = 10 * time.Minute
	// deviceInterval is the least time between two polls of one device code (RFC 8628 §3.2's
	// default); each slow_down adds deviceSlowDownStep, up to deviceMaxInterval.
	deviceInterval     = 5 * time.Second
	deviceSlowDownStep = 5 * time.Second
	deviceMaxInterval  = 60 * time.Second
	// devicePollSlack is how much earlier than the interval a poll may come without a
	// slow_down: the clients' timers and the network jitter by a few milliseconds.
	devicePollSlack = time.Second
	// deviceGrace is how long a device code's records outlive its expiry, so that a late poll
	// is told expired_token rather than invalid_grant.
	deviceGrace = 10 * time.Minute
)

// User codes: 8 characters of an alphabet without the look-alikes 0/O, 1/I/L (31 characters:
// log2(31^8) ≈ 39.6 bits), shown as XXXX-XXXX and accepted in any case, with or without the
// dash or spaces.
const (
	userCodeAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
	userCodeLength   = 8
)

// grantDeviceCode is the device_code grant type.
const grantDeviceCode = clients.GrantDeviceCode

// The RFC 8628 §3.5 answers of the token endpoint while a device code waits, and after.
var (
	errAuthorizationPending = &fosite.RFC6749Error{ErrorField: "authorization_pending", CodeField: http.StatusBadRequest,
		DescriptionField: "The person has not yet approved this device; keep polling at the interval."}
	errSlowDown = &fosite.RFC6749Error{ErrorField: "slow_down", CodeField: http.StatusBadRequest,
		DescriptionField: "The device polls too often; add 5 seconds to the interval for this and every later request."}
	errExpiredToken = &fosite.RFC6749Error{ErrorField: "expired_token", CodeField: http.StatusBadRequest,
		DescriptionField: "The device code has expired; start the device authorization again."}
	errDeviceDenied = &fosite.RFC6749Error{ErrorField: "access_denied", CodeField: http.StatusBadRequest,
		DescriptionField: "The person refused this device, or signed out before it collected its tokens."}
)

// deviceRecord is a pending device authorization request.
type deviceRecord struct {
	ClientID    string    `json:"client_id"`
	Scopes      []string  `json:"scopes,omitempty"`
	Audience    []string  `json:"audience,omitempty"`
	RequestedAt time.Time `json:"requested_at"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// deviceDecision is the person's answer to a device code.
type deviceDecision struct {
	// Approved is the person's yes; Ended marks an approval whose portal session signed out
	// before the device collected its tokens (answered as a refusal).
	Approved bool `json:"approved,omitempty"`
	Ended    bool `json:"ended,omitempty"`
	// Username, Subject, AuthTime, AMR and TwoFactor are the approving sign-in's.
	Username  string    `json:"username,omitempty"`
	Subject   string    `json:"sub,omitempty"`
	AuthTime  time.Time `json:"auth_time,omitzero"`
	AMR       []string  `json:"amr,omitempty"`
	TwoFactor bool      `json:"two_factor,omitempty"`
	// Scopes and Audience are granted.
	Scopes   []string `json:"scopes,omitempty"`
	Audience []string `json:"audience,omitempty"`
	// BrowserSession is the approving portal session's reference.
	BrowserSession string    `json:"browser_session,omitempty"`
	DecidedAt      time.Time `json:"decided_at"`
}

func deviceKey(sig string) []byte         { return []byte("device/" + sig) }
func deviceUserKey(digest string) []byte  { return []byte("device-user/" + digest) }
func deviceDecisionKey(sig string) []byte { return []byte("device-decision/" + sig) }
func deviceRedeemedKey(sig string) []byte { return []byte("device-redeemed/" + sig) }
func devicePollKey(sig string) []byte     { return []byte("device-poll/" + sig) }
func deviceIntervalKey(sig string) []byte { return []byte("device-interval/" + sig) }

// newUserCode is a fresh user code in its normal form (8 characters, no dash).
func newUserCode() string {
	var out [userCodeLength]byte
	var buf [32]byte
	n := 0
	for n < userCodeLength {
		_, _ = rand.Read(buf[:]) // crypto/rand.Read never fails
		for _, b := range buf {
			// 248 = 8×31: rejecting the bytes above keeps every character equally likely
			if b < 248 && n < userCodeLength {
				out[n] = userCodeAlphabet[int(b)%len(userCodeAlphabet)]
				n++
			}
		}
	}
	return string(out[:])
}

// NormalUserCode is the normal form of a user code as a person typed it (any case, with or
// without the dash and spaces), and whether it can be a user code at all.
func NormalUserCode(typed string) (string, bool) {
	if len(typed) > 32 {
		return "", false
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(typed) {
		switch {
		case r == '-' || r == ' ' || r == '\t':
		case r < 128 && strings.ContainsRune(userCodeAlphabet, r):
			b.WriteRune(r)
		default:
			return "", false
		}
	}
	if b.Len() != userCodeLength {
		return "", false
	}
	return b.String(), true
}

// FormatUserCode shows a normal user code as people read it: XXXX-XXXX.
func FormatUserCode(code string) string {
	if len(code) != userCodeLength {
		return code
	}
	return code[:4] + "-" + code[4:]
}

// userCodeDigest keys a user code's index: an HMAC under the provider's secret, so the store
// holds no user code and a copy of it does not let anyone search the 2^40 codes offline.
func (p *Provider) userCodeDigest(code string) string {
	m := hmac.New(sha256.New, p.cfg.HMACSecret)
	m.Write([]byte("device user code\x00"))
	m.Write([]byte(code))
	return hex.EncodeToString(m.Sum(nil))
}

// deviceSignature is the signature of a device code presented to the token endpoint, when it
// is one of ours with a valid HMAC under the current secret.
func (p *Provider) deviceSignature(ctx context.Context, code string) (string, bool) {
	raw, ok := strings.CutPrefix(code, TokenPrefix+kindDevice+"_")
	if !ok || p.strategy.Enigma.Validate(ctx, raw) != nil {
		return "", false
	}
	return p.strategy.Enigma.Signature(raw), true
}

// deviceLifespan is how long client's device codes wait.
func (p *Provider) deviceLifespan(c *clients.Client) time.Duration {
	if d := c.DeviceCodeLifespan(); d > 0 {
		return d
	}
	if d := p.cfg.Lifespans.DeviceCode; d > 0 {
		return d
	}
	return defaultDeviceCodeLifespan
}

// deviceAuthorization is the device authorization endpoint's answer (RFC 8628 §3.2).
type deviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// Device authorization requests per address: a burst of deviceRequestBurst, then one per
// deviceRequestInterval (per node). Each request leaves a device record and a user code in the
// store for the device_code lifespan, so one address must not make them without end; a device
// makes one per sign-in.
const (
	deviceRequestBurst    = 10
	deviceRequestInterval = 6 * time.Second
)

// errDeviceRequestsThrottled answers an address over the limit of device authorization requests.
var errDeviceRequestsThrottled = &fosite.RFC6749Error{ErrorField: "slow_down", CodeField: http.StatusTooManyRequests,
	DescriptionField: "Too many device authorization requests from this address; wait before asking again."}

// newDeviceRequests is the per-address limit of device authorization requests.
func newDeviceRequests() *clients.Limiter {
	return clients.NewLimiter(deviceRequestBurst, deviceRequestInterval, 1<<16)
}

// ServeDeviceAuthorization is the device authorization endpoint (RFC 8628 §3.1): the client
// authenticates as at the token endpoint (a public client sends its client_id alone), asks for
// scopes it is registered with and audiences its list allows, and gets a device code to poll
// the token endpoint with and a user code for the person to type at /device.
// An address gets at most deviceRequestBurst requests at once, then one per
// deviceRequestInterval (429 slow_down).
func (p *Provider) ServeDeviceAuthorization(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := parseForm(w, r); err != nil {
		p.writeError(w, r, err)
		return
	}
	if p.cfg.People == nil {
		p.writeError(w, r, fosite.ErrInvalidRequest.WithHint("This provider has no users_file: there is no one to approve a device."))
		return
	}
	for _, k := range []string{"scope", "client_id", "client_secret"} {
		if len(r.PostForm[k]) > 1 {
			p.writeError(w, r, fosite.ErrInvalidRequest.WithHintf("The %s parameter is repeated.", k))
			return
		}
	}
	if _, ok := p.deviceRequests.Take(clientaddr.KeyOf(p.cfg.ClientIP(r))); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(deviceRequestInterval/time.Second)))
		p.writeError(w, r, errDeviceRequestsThrottled)
		return
	}
	client, err := p.authenticateClient(ctx, r, r.PostForm)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	if !client.GetGrantTypes().Has(grantDeviceCode) {
		p.writeError(w, r, fosite.ErrUnauthorizedClient.WithHintf("The client is not registered for the grant type '%s'.", grantDeviceCode))
		return
	}
	var scopes []string
	for _, s := range strings.Fields(r.PostForm.Get("scope")) {
		if !client.HasScope(s) {
			p.writeError(w, r, fosite.ErrInvalidScope.WithHintf("The client may not request the scope '%s'.", s))
			return
		}
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	aud := fosite.GetAudiences(r.PostForm)
	if err := audienceStrategy(client.GetAudience(), aud); err != nil {
		p.writeError(w, r, err)
		return
	}
	for _, a := range aud {
		if err := checkRequestedURL(a); err != nil {
			p.writeError(w, r, errInvalidTarget("The "+err.Error()))
			return
		}
	}
	lifespan := p.deviceLifespan(client)
	now := time.Now()
	token, sig, err := p.strategy.Enigma.Generate(ctx)
	if err != nil {
		p.writeError(w, r, fosite.ErrServerError.WithWrap(fmt.Errorf("generating a device code: %w", err)))
		return
	}
	rec, err := json.Marshal(deviceRecord{ClientID: client.ID(), Scopes: scopes, Audience: aud, RequestedAt: now, ExpiresAt: now.Add(lifespan)})
	if err != nil {
		p.writeError(w, r, fosite.ErrServerError.WithWrap(fmt.Errorf("encoding a device request: %w", err)))
		return
	}
	if err := p.cfg.KV.Put(ctx, store.Entry{Key: deviceKey(sig), Value: rec, TTL: lifespan + deviceGrace}); err != nil {
		p.writeError(w, r, fmt.Errorf("keeping a device request: %w", err))
		return
	}
	userCode := ""
	for range 8 { // two live codes alike are one in 2^40 per pair: a retry is for form's sake
		code := newUserCode()
		created, err := createOnce(ctx, p.cfg.KV, store.Entry{Key: deviceUserKey(p.userCodeDigest(code)), Value: []byte(sig), TTL: lifespan})
		if err != nil {
			p.writeError(w, r, fmt.Errorf("keeping a user code: %w", err))
			return
		}
		if created {
			userCode = code
			break
		}
	}
	if userCode == "" {
		p.writeError(w, r, fosite.ErrServerError.WithWrap(errors.New("no free user code after 8 tries")))
		return
	}
	shown := FormatUserCode(userCode)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, deviceAuthorization{
		DeviceCode:              withPrefix(token, kindDevice),
		UserCode:                shown,
		VerificationURI:         p.cfg.Issuer + PathDevice,
		VerificationURIComplete: p.cfg.Issuer + PathDevice + "?user_code=" + shown,
		ExpiresIn:               int64(lifespan / time.Second),
		Interval:                int64(deviceInterval / time.Second),
	})
	p.cfg.Logger.Info("device authorization started", zap.String("client_id", client.ID()), zap.Strings("scopes", scopes),
		zap.Duration("expires_in", lifespan))
}

// createOnce stores e unless a live record holds its key, atomically across the nodes sharing
// kv, and reports whether this call stored it. The stored value is e.Value after a random tag
// and a newline (see untagged), so that on a store without store.Creator (Badger, one process)
// GetOrCreate tells this call's record from another's.
func createOnce(ctx context.Context, kv store.KV, e store.Entry) (bool, error) {
	tagged := append([]byte(rand.Text()+"\n"), e.Value...)
	if c, ok := kv.(store.Creator); ok {
		return c.Create(ctx, store.Entry{Key: e.Key, Value: tagged, TTL: e.TTL})
	}
	v, err := kv.GetOrCreate(ctx, e.Key, func() ([]byte, error) { return tagged, nil })
	if err != nil || !bytes.Equal(v, tagged) {
		return false, err
	}
	// ours: give it its expiry even if the caller has gone
	if err := kv.Put(context.WithoutCancel(ctx), store.Entry{Key: e.Key, Value: tagged, TTL: e.TTL}); err != nil {
		return false, err
	}
	return true, nil
}

// untagged is the value createOnce was given, from the record it stored.
func untagged(v []byte) []byte {
	if _, rest, ok := bytes.Cut(v, []byte("\n")); ok {
		return rest
	}
	return v
}

// loadDevice reads a device request by its code's signature; fosite.ErrNotFound when there is
// none (never issued, or gone past its grace).
func (p *Provider) loadDevice(ctx context.Context, sig string) (*deviceRecord, error) {
	data, err := p.cfg.KV.Get(ctx, deviceKey(sig))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fosite.ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("reading a device request: %w", err)
	}
	var rec deviceRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("decoding a device request: %w", err)
	}
	return &rec, nil
}

// deviceByUserCode finds the live device request a (normal) user code names, and its
// signature; fosite.ErrNotFound when no live code is that one.
func (p *Provider) deviceByUserCode(ctx context.Context, code string) (string, *deviceRecord, error) {
	v, err := p.cfg.KV.Get(ctx, deviceUserKey(p.userCodeDigest(code)))
	if errors.Is(err, store.ErrNotFound) {
		return "", nil, fosite.ErrNotFound
	} else if err != nil {
		return "", nil, fmt.Errorf("reading a user code: %w", err)
	}
	sig := string(untagged(v))
	rec, err := p.loadDevice(ctx, sig)
	if err != nil {
		return "", nil, err
	}
	return sig, rec, nil
}

// loadDecision reads the person's answer to a device code, if there is one.
func (p *Provider) loadDecision(ctx context.Context, sig string) (*deviceDecision, bool, error) {
	v, err := p.cfg.KV.Get(ctx, deviceDecisionKey(sig))
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, fmt.Errorf("reading a device decision: %w", err)
	}
	var d deviceDecision
	if err := json.Unmarshal(untagged(v), &d); err != nil {
		return nil, false, fmt.Errorf("decoding a device decision: %w", err)
	}
	return &d, true, nil
}

// errDeviceDecided is a second answer to a device code: the first stands.
var errDeviceDecided = errors.New("the device code was already answered")

// decideDevice records the person's answer to the device code sig, once: of two answers (two
// tabs, two nodes) exactly one is kept, and the other gets errDeviceDecided. An approval is
// listed under its portal session, so signing out there ends it (EndBrowserSession).
func (p *Provider) decideDevice(ctx context.Context, sig string, rec *deviceRecord, d deviceDecision) error {
	d.DecidedAt = time.Now()
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encoding a device decision: %w", err)
	}
	ttl := max(time.Until(rec.ExpiresAt), 0) + deviceGrace
	created, err := createOnce(ctx, p.cfg.KV, store.Entry{Key: deviceDecisionKey(sig), Value: data, TTL: ttl})
	if err != nil {
		return fmt.Errorf("keeping a device decision: %w", err)
	}
	if !created {
		return errDeviceDecided
	}
	if d.Approved && d.BrowserSession != "" {
		if err := p.cfg.KV.Put(ctx, store.Entry{Key: browserIndexKey(d.BrowserSession, kindDevice, sig), Value: []byte{1}, TTL: ttl}); err != nil {
			return fmt.Errorf("listing a device approval under its session: %w", err)
		}
	}
	return nil
}

// endDeviceApproval turns the approval of device code sig into a refusal, when the portal
// session that gave it signs out before the device collected its tokens.
func (p *Provider) endDeviceApproval(ctx context.Context, sig string) error {
	d, found, err := p.loadDecision(ctx, sig)
	if err != nil || !found || !d.Approved {
		return err
	}
	d.Approved, d.Ended = false, true
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encoding a device decision: %w", err)
	}
	return p.cfg.KV.Put(ctx, store.Entry{Key: deviceDecisionKey(sig), Value: append([]byte("ended\n"), data...), TTL: deviceGrace})
}

// devicePoll is the answer to a poll of a pending device code: authorization_pending, or
// slow_down when it comes sooner than the interval after the last one (each slow_down adds 5
// seconds to the interval, as RFC 8628 §3.5 tells the client to).
func (p *Provider) devicePoll(ctx context.Context, sig string, rec *deviceRecord) error {
	interval := deviceInterval
	if v, err := p.cfg.KV.Get(ctx, deviceIntervalKey(sig)); err == nil {
		if n, err := strconv.Atoi(string(v)); err == nil && n > 0 {
			interval = time.Duration(n) * time.Second
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("reading a polling interval: %w", err)
	}
	_, claimed, err := store.Claim(ctx, p.cfg.KV, devicePollKey(sig), interval-devicePollSlack)
	if err != nil {
		return fmt.Errorf("claiming a poll: %w", err)
	}
	if claimed {
		return errAuthorizationPending
	}
	next := min(interval+deviceSlowDownStep, deviceMaxInterval)
	ttl := max(time.Until(rec.ExpiresAt), 0) + deviceGrace
	if err := p.cfg.KV.Put(ctx, store.Entry{Key: deviceIntervalKey(sig), Value: []byte(strconv.Itoa(int(next / time.Second))), TTL: ttl}); err != nil {
		return fmt.Errorf("raising a polling interval: %w", err)
	}
	return errSlowDown
}

// deviceGrant is the token endpoint's handler of the device_code grant (RFC 8628 §3.4): it
// checks the device code and the person's answer (HandleTokenEndpointRequest), and mints the
// tokens with fosite's strategies and storage as the code flow's response does (access token,
// refresh token for offline access, ID token for openid).
type deviceGrant struct {
	p        *Provider
	fc       *fosite.Config
	access   *oauth2.HandleHelper
	refresh  oauth2.RefreshTokenStrategy
	storage  oauth2.RefreshTokenStorage
	idTokens *openid.IDTokenHandleHelper
}

var _ fosite.TokenEndpointHandler = (*deviceGrant)(nil)

// CanHandleTokenEndpointRequest implements fosite.TokenEndpointHandler.
func (h *deviceGrant) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne(grantDeviceCode)
}

// CanSkipClientAuth implements fosite.TokenEndpointHandler: the client authenticates as it did
// at the device authorization endpoint.
func (h *deviceGrant) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

// HandleTokenEndpointRequest implements fosite.TokenEndpointHandler: the device code must be
// ours, the client's, live and approved; the request then stands for the approval (its
// session, scopes and audience). It does not spend the code: ServeToken claims it just before
// the tokens are minted, so two racing redemptions get one set of tokens.
func (h *deviceGrant) HandleTokenEndpointRequest(ctx context.Context, ar fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	client, ok := ar.GetClient().(*clients.Client)
	if !ok {
		return fosite.ErrInvalidClient
	}
	if !client.GetGrantTypes().Has(grantDeviceCode) {
		return fosite.ErrUnauthorizedClient.WithHintf("The client is not registered for the grant type '%s'.", grantDeviceCode)
	}
	code := ar.GetRequestForm().Get("device_code")
	if code == "" {
		return fosite.ErrInvalidRequest.WithHint("The device_code parameter is missing.")
	}
	sig, ok := h.p.deviceSignature(ctx, code)
	if !ok {
		return fosite.ErrInvalidGrant.WithHint("The device_code is not one this provider issued.")
	}
	rec, err := h.p.loadDevice(ctx, sig)
	if errors.Is(err, fosite.ErrNotFound) {
		return fosite.ErrInvalidGrant.WithHint("The device_code is unknown or expired long ago.")
	} else if err != nil {
		return err
	}
	if rec.ClientID != client.ID() {
		return fosite.ErrInvalidGrant.WithHint("The device_code was issued to another client.")
	}
	if revoked, err := h.p.cfg.Cutoffs.Revoked(ctx, client.ID(), rec.RequestedAt); err != nil {
		return err
	} else if revoked {
		return fosite.ErrInvalidGrant.WithHint("The client's tokens were revoked after this device code was issued.")
	}
	if time.Now().After(rec.ExpiresAt) {
		return errExpiredToken
	}
	d, found, err := h.p.loadDecision(ctx, sig)
	if err != nil {
		return err
	}
	if !found {
		return h.p.devicePoll(ctx, sig, rec)
	}
	if !d.Approved {
		return errDeviceDenied
	}
	if revoked, err := h.p.cfg.Cutoffs.Revoked(ctx, userCutoffID(d.Username), d.DecidedAt); err != nil {
		return err
	} else if revoked {
		return fosite.ErrInvalidGrant.WithHint("The person's tokens were revoked (a password change) after they approved this device.")
	}
	if _, spent, err := h.p.deviceRedeemed(ctx, sig); err != nil {
		return err
	} else if spent {
		return fosite.ErrInvalidGrant.WithHint("The device_code was already used.")
	}

	sess, ok := ar.GetSession().(*Session)
	if !ok {
		return fosite.ErrServerError.WithDebugf("unexpected session type %T", ar.GetSession())
	}
	sess.Subject, sess.Username, sess.TwoFactor, sess.BrowserSession = d.Subject, d.Username, d.TwoFactor, d.BrowserSession
	claims := sess.IDTokenClaims()
	claims.Subject = d.Subject
	claims.Issuer = h.p.cfg.Issuer
	claims.AuthTime = d.AuthTime.UTC().Truncate(time.Second)
	claims.RequestedAt = rec.RequestedAt.UTC().Truncate(time.Second)
	claims.AuthenticationMethodsReferences = d.AMR
	claims.JTI = uuid.New().String()
	claims.Extra = h.p.idTokenExtra(client, nil) // refreshedUser fills the user's claims
	alg, kid := client.IDTokenSigning()
	headers := sess.IDTokenHeaders()
	headers.Extra["alg"] = alg
	if k, err := h.p.signer.key(kid, alg); err == nil {
		headers.Extra["kid"] = k.ID
		headers.Extra["alg"] = k.Algorithm
	}
	if req, ok := ar.(*fosite.AccessRequest); ok {
		req.RequestedScope = slices.Clone(rec.Scopes)
		req.RequestedAudience = slices.Clone(rec.Audience)
	}
	for _, s := range d.Scopes {
		ar.GrantScope(s)
	}
	for _, a := range d.Audience {
		ar.GrantAudience(a)
	}
	now := time.Now().UTC()
	sess.SetExpiresAt(fosite.AccessToken, now.Add(fosite.GetEffectiveLifespan(client, grantDeviceCode, fosite.AccessToken, h.fc.GetAccessTokenLifespan(ctx))).Round(time.Second))
	if rt := fosite.GetEffectiveLifespan(client, grantDeviceCode, fosite.RefreshToken, h.fc.GetRefreshTokenLifespan(ctx)); rt > -1 {
		sess.SetExpiresAt(fosite.RefreshToken, now.Add(rt).Round(time.Second))
	}
	return nil
}

// PopulateTokenEndpointResponse implements fosite.TokenEndpointHandler: the access token, a
// refresh token when offline access was granted to a client with the refresh_token grant, and
// an ID token when openid was granted.
func (h *deviceGrant) PopulateTokenEndpointResponse(ctx context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	client := ar.GetClient()
	atLifespan := fosite.GetEffectiveLifespan(client, grantDeviceCode, fosite.AccessToken, h.fc.GetAccessTokenLifespan(ctx))
	if err := h.access.IssueAccessToken(ctx, atLifespan, ar, resp); err != nil {
		return fosite.ErrServerError.WithWrap(fmt.Errorf("issuing a device's access token: %w", err))
	}
	if ar.GetGrantedScopes().HasOneOf(h.fc.GetRefreshTokenScopes(ctx)...) && client.GetGrantTypes().Has(grantRefreshToken) {
		refresh, sig, err := h.refresh.GenerateRefreshToken(ctx, ar)
		if err != nil {
			return fosite.ErrServerError.WithWrap(fmt.Errorf("generating a device's refresh token: %w", err))
		}
		if err := h.storage.CreateRefreshTokenSession(ctx, sig, ar.Sanitize(nil)); err != nil {
			return fosite.ErrServerError.WithWrap(fmt.Errorf("keeping a device's refresh token: %w", err))
		}
		resp.SetExtra("refresh_token", refresh)
	}
	if ar.GetGrantedScopes().Has("openid") {
		sess, ok := ar.GetSession().(*Session)
		if !ok {
			return fosite.ErrServerError.WithDebugf("unexpected session type %T", ar.GetSession())
		}
		sess.IDTokenClaims().AccessTokenHash = h.idTokens.GetAccessTokenHash(ctx, ar, resp)
		idLifespan := fosite.GetEffectiveLifespan(client, grantDeviceCode, fosite.IDToken, h.fc.GetIDTokenLifespan(ctx))
		if err := h.idTokens.IssueExplicitIDToken(ctx, idLifespan, ar, resp); err != nil {
			return fosite.ErrServerError.WithWrap(fmt.Errorf("issuing a device's ID token: %w", err))
		}
	}
	return nil
}

// deviceRedeemed reports whether the device code sig has given its tokens.
func (p *Provider) deviceRedeemed(ctx context.Context, sig string) ([]byte, bool, error) {
	v, err := p.cfg.KV.Get(ctx, deviceRedeemedKey(sig))
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, fmt.Errorf("reading a device redemption: %w", err)
	}
	return v, true, nil
}

// serveDeviceGrant is the device_code grant at the token endpoint: the checks of deviceGrant,
// then the one claim (store.Claim, across nodes) that lets exactly one request mint the
// approval's tokens; a second redemption is invalid_grant.
func (p *Provider) serveDeviceGrant(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := p.oauth2.NewAccessRequest(ctx, r, &Session{})
	if err != nil {
		p.refuseToken(w, r, err)
		return
	}
	sig, _ := p.deviceSignature(ctx, r.PostForm.Get("device_code"))
	rec, err := p.loadDevice(ctx, sig)
	if err != nil {
		p.refuseToken(w, r, err)
		return
	}
	key := deviceRedeemedKey(sig)
	_, claimed, err := store.Claim(ctx, p.cfg.KV, key, max(time.Until(rec.ExpiresAt), 0)+deviceGrace)
	if err != nil {
		p.refuseToken(w, r, fmt.Errorf("claiming a device code: %w", err))
		return
	}
	if !claimed {
		p.refuseToken(w, r, fosite.ErrInvalidGrant.WithHint("The device_code was already used."))
		return
	}
	if !p.issue(w, r, ar, grantDeviceCode) {
		// nothing was given: the approval may be collected again
		_ = p.cfg.KV.Delete(context.WithoutCancel(ctx), key)
		return
	}
	p.cfg.Logger.Info("token issued",
		zap.String("client_id", ar.GetClient().GetID()),
		zap.String("grant_type", grantDeviceCode),
		zap.String("user", ar.GetSession().GetUsername()),
		zap.Strings("scopes", ar.GetGrantedScopes()))
}
