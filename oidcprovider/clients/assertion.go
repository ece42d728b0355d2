package clients

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// ClientAssertionType is the client_assertion_type of a JWT assertion (RFC 7523 §2.2).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Limits of client assertions.
const (
	// AssertionClockSkew is how far the provider's clock and the client's may disagree: an
	// assertion's nbf and iat may be this far in the future, its exp this far in the past.
	AssertionClockSkew = 60 * time.Second
	// MaxAssertionLifetime is how far in the future an assertion's exp may be; a longer-lived
	// assertion is refused, so the jti records that refuse replays stay short-lived.
	MaxAssertionLifetime = time.Hour
	// maxAssertionBytes bounds the assertion read.
	maxAssertionBytes = 16 << 10
)

// assertionAlgs are the algorithms an assertion may name in its header; none is not one.
var assertionAlgs = func() []jose.SignatureAlgorithm {
	var algs []jose.SignatureAlgorithm
	for _, a := range append(slices.Clone(hmacAlgs), signingAlgs...) {
		algs = append(algs, jose.SignatureAlgorithm(a))
	}
	return algs
}()

// readAssertion reads a client_assertion (RFC 7523 §2.2) from form: the client is its sub (its
// signature is checked later, by Authenticate); the method follows from its algorithm (HS* is
// client_secret_jwt, any other private_key_jwt).
func readAssertion(form url.Values, hasBasic bool) (Credentials, error) {
	typ, raw := form.Get("client_assertion_type"), form.Get("client_assertion")
	switch {
	case hasBasic || form.Get("client_secret") != "":
		return Credentials{}, fosite.ErrInvalidRequest.WithHint("The client used more than one authentication method; use only one.")
	case typ != ClientAssertionType:
		return Credentials{}, fosite.ErrInvalidClient.WithHintf("The client_assertion_type must be %s, with a client_assertion.", ClientAssertionType)
	case raw == "":
		return Credentials{}, fosite.ErrInvalidClient.WithHint("The client_assertion is missing.")
	case len(raw) > maxAssertionBytes:
		return Credentials{}, fosite.ErrInvalidClient.WithHint("The client_assertion is too long.")
	}
	tok, err := jwt.ParseSigned(raw, assertionAlgs)
	if err != nil {
		return Credentials{}, fosite.ErrInvalidClient.WithHint("The client_assertion is not a JWT signed with an algorithm this provider accepts (HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512).")
	}
	var claims jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil || claims.Subject == "" {
		return Credentials{}, fosite.ErrInvalidClient.WithHint("The client_assertion has no sub: it must be the client id.")
	}
	if id := form.Get("client_id"); id != "" && id != claims.Subject {
		return Credentials{}, fosite.ErrInvalidClient.WithHint("The client_id parameter does not match the client_assertion's sub.")
	}
	method := AuthMethodPrivateKeyJWT
	if slices.Contains(hmacAlgs, tok.Headers[0].Algorithm) {
		method = AuthMethodClientSecretJWT
	}
	return Credentials{Method: method, ClientID: claims.Subject, Assertion: raw}, nil
}

// AssertionSubject is the client id a request's client_assertion claims to be (its sub, not
// verified), or "" when it has none; for logging and early checks only.
func AssertionSubject(form url.Values) string {
	raw := form.Get("client_assertion")
	if raw == "" || len(raw) > maxAssertionBytes {
		return ""
	}
	tok, err := jwt.ParseSigned(raw, assertionAlgs)
	if err != nil {
		return ""
	}
	var claims jwt.Claims
	if tok.UnsafeClaimsWithoutVerification(&claims) != nil {
		return ""
	}
	return claims.Subject
}

// checkAssertion verifies a client's assertion (RFC 7523 §3): the client's registered
// algorithm and key, iss and sub the client id, aud one of the provider's, exp present and
// within MaxAssertionLifetime, nbf and iat not in the future (AssertionClockSkew either way),
// and a jti not seen before, recorded in the store until the assertion expires. The error says
// why, for the log; the client is told only invalid_client.
func (a *Authenticator) checkAssertion(ctx context.Context, c *Client, raw string) error {
	payload, err := c.verifySigned(ctx, raw, []string{c.cfg.TokenEndpointAuthSigningAlg})
	if err != nil {
		return err
	}
	var claims jwt.Claims
	if err := json.Unmarshal(payload, &claims); err != nil {
		return fmt.Errorf("reading the claims: %w", err)
	}
	now := a.now()
	switch {
	case claims.Issuer != c.ID() || claims.Subject != c.ID():
		return errors.New("iss and sub must both be the client id")
	case claims.Expiry == nil:
		return errors.New("no exp")
	case claims.ID == "":
		return errors.New("no jti")
	case len(claims.ID) > 512:
		return errors.New("jti longer than 512 bytes")
	case claims.Expiry.Time().After(now.Add(MaxAssertionLifetime + AssertionClockSkew)):
		return fmt.Errorf("exp is more than %s ahead", MaxAssertionLifetime)
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{AnyAudience: a.Audiences, Time: now}, AssertionClockSkew); err != nil {
		switch {
		case errors.Is(err, jwt.ErrInvalidAudience):
			return fmt.Errorf("aud %v names neither the issuer nor an endpoint of this provider", []string(claims.Audience))
		case errors.Is(err, jwt.ErrExpired):
			return errors.New("expired")
		case errors.Is(err, jwt.ErrNotValidYet):
			return errors.New("nbf is in the future")
		case errors.Is(err, jwt.ErrIssuedInTheFuture):
			return errors.New("iat is in the future")
		}
		return fmt.Errorf("claims: %w", err)
	}
	if a.Replay == nil {
		return errors.New("no store to record the jti in")
	}
	ttl := claims.Expiry.Time().Add(AssertionClockSkew).Sub(now)
	_, claimed, err := store.Claim(ctx, a.Replay, jtiKey(c.ID(), claims.ID), ttl)
	if err != nil {
		return &unavailableError{fmt.Errorf("recording the assertion's jti: %w", err)}
	}
	if !claimed {
		return errors.New("replayed: its jti was used before")
	}
	return nil
}

// unavailableError is a store failure while checking an assertion: the answer is
// temporarily_unavailable, not invalid_client.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// jtiKey is the store key recording a client's assertion jti (hashed: a jti is the client's
// text, of any length).
func jtiKey(clientID, jti string) []byte {
	h := sha256.Sum256([]byte(clientID + "\x00" + jti))
	return []byte("clientjwt/jti/" + base64.RawURLEncoding.EncodeToString(h[:]))
}

// errNoKey is a JWS whose key the client did not register.
var errNoKey = errors.New("no key of the client matches the JWS's kid and alg")

// verifySigned checks a compact JWS signed by the client with one of algs (none is never one):
// with its secret for HS*, else with the registered public key named by the header's kid (or
// the only key for the algorithm when there is no kid); a jwks_uri is fetched again, at most
// once a minute, when it has no such key. It returns the payload.
func (c *Client) verifySigned(ctx context.Context, raw string, algs []string) ([]byte, error) {
	allowed := make([]jose.SignatureAlgorithm, 0, len(algs))
	for _, a := range algs {
		if a != "" && a != "none" {
			allowed = append(allowed, jose.SignatureAlgorithm(a))
		}
	}
	if len(allowed) == 0 {
		return nil, errors.New("the client registered no algorithm for it")
	}
	if strings.Count(raw, ".") != 2 {
		return nil, errors.New("not a compact JWS (an encrypted JWT is not accepted)")
	}
	jws, err := jose.ParseSignedCompact(raw, allowed)
	if err != nil {
		return nil, fmt.Errorf("alg is not %s: %w", strings.Join(algs, " or "), err)
	}
	h := jws.Signatures[0].Header
	alg := h.Algorithm
	if slices.Contains(hmacAlgs, alg) {
		if c.jwt.hmacKey == nil {
			return nil, errors.New("the client has no secret to verify HS* with")
		}
		payload, err := jws.Verify(c.jwt.hmacKey)
		if err != nil {
			return nil, fmt.Errorf("signature: %w", err)
		}
		return payload, nil
	}
	key, err := c.publicKey(ctx, h.KeyID, alg)
	if err != nil {
		return nil, err
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, fmt.Errorf("signature (kid %q): %w", key.KeyID, err)
	}
	return payload, nil
}

// publicKey finds the client's key for kid and alg (the only one for alg when kid is "").
func (c *Client) publicKey(ctx context.Context, kid, alg string) (*jose.JSONWebKey, error) {
	if c.jwt.remote == nil {
		return pickKey(c.jwt.keys, kid, alg)
	}
	set, err := c.jwt.remote.keys(ctx, false)
	if err != nil {
		return nil, err
	}
	k, err := pickKey(set, kid, alg)
	if errors.Is(err, errNoKey) {
		// the client may have rotated its keys: look again (at most once a minute)
		if set, err = c.jwt.remote.keys(ctx, true); err != nil {
			return nil, err
		}
		k, err = pickKey(set, kid, alg)
	}
	return k, err
}

// pickKey is the key of set with kid that can verify alg, or, when kid is "", the only such key.
func pickKey(set []jose.JSONWebKey, kid, alg string) (*jose.JSONWebKey, error) {
	var found *jose.JSONWebKey
	for i := range set {
		k := &set[i]
		if (kid != "" && k.KeyID != kid) || (k.Algorithm != "" && k.Algorithm != alg) || fitsAlgorithm(k.Key, alg) != nil {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("several keys of the client verify %s: the JWS must name one by kid", alg)
		}
		found = k
	}
	if found == nil {
		return nil, fmt.Errorf("%w (kid %q, alg %s)", errNoKey, kid, alg)
	}
	return found, nil
}

// VerifyRequestObject checks a request object (RFC 9101) signed by the client and returns its
// claims as JSON: with its request_object_signing_alg, or any algorithm of its keys when it set
// none; never none, never an HMAC. A client without public keys gets an error.
func (c *Client) VerifyRequestObject(ctx context.Context, raw string) ([]byte, error) {
	if !c.jwt.hasKeys() {
		return nil, errors.New("the client registered no public keys (public_key or jwks_uri) to verify request objects with")
	}
	algs := signingAlgs
	if ro := c.cfg.RequestObjectSigningAlg; ro != "" {
		algs = []string{ro}
	}
	return c.verifySigned(ctx, raw, algs)
}

// RequestObjectAlgs are the algorithms the provider accepts for request objects.
func RequestObjectAlgs() []string { return slices.Clone(signingAlgs) }

// AssertionAlgs are the algorithms the provider accepts for client assertions: HS* for
// client_secret_jwt, the others for private_key_jwt.
func AssertionAlgs() []string { return append(slices.Clone(hmacAlgs), signingAlgs...) }
