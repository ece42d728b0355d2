package oauth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/token/jwt"

	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/keys"
)

// JWT access tokens (RFC 9068).
//
// A client with access_token_signed_response_alg gets its access tokens as JWS compact tokens
// signed by one of the provider's signing keys, with the header typ "at+jwt" and the key's kid,
// and the claims:
//
//	iss        the issuer
//	sub        the user's subject as the client sees it (pairwise where the client has a
//	           sector), or the client id for client_credentials
//	aud        the granted audience; the client id when none was granted (RFC 9068 §2.2 requires
//	           an aud; a client id is never a URL, so such a token authorizes no gated site, as
//	           an opaque token without an audience does not)
//	client_id  the client
//	scope, scp the granted scopes, space-separated and as an array (DESIGN §4.6); both absent
//	           when none was granted
//	jti        a UUIDv7 whose time is the token request's, to the millisecond: the revocation
//	           cut-offs (a client's, a user's, a signed-out session's) compare it, as they
//	           compare an opaque token's stored request time
//	iat, exp   issue and expiry, in seconds
//	auth_time, acr, amr  of the sign-in, where known (user tokens)
//	sid        the portal session's (sidOf), when the token came through one
//	portcullis_user  for user tokens: the username and whether a second factor was used,
//	           sealed (AES-256-GCM under a key derived from the HMAC secret). The gate needs the
//	           username to read the user afresh; a client that sees pairwise subjects, or was
//	           not granted profile, must not learn it from its token.
//
// The refresh token and the code stay opaque. The token is stored as an opaque one is, under its
// jti (the strategy's "signature"), so introspection, revocation, refresh and userinfo read it
// from the store as before; the gate (CheckBearer) verifies it by signature and checks its
// revocation in memory (Revocations) instead.

// userClaim is the private claim that holds the sealed username of a user's JWT access token.
const userClaim = "portcullis_user"

// accessStrategy is the provider's access-token strategy: the prefixed opaque tokens, or, for a
// client whose access_token_signed_response_alg names an algorithm, a JWT access token. Refresh
// tokens and codes are always opaque (the embedded prefixedStrategy's).
type accessStrategy struct {
	*prefixedStrategy
	p *Provider
}

var _ oauth2.CoreStrategy = (*accessStrategy)(nil)

// jwtShaped reports whether token has the form of a JWS compact token rather than one of our
// opaque tokens.
func jwtShaped(token string) bool {
	return !strings.HasPrefix(token, TokenPrefix) && strings.Count(token, ".") == 2
}

// GenerateAccessToken implements oauth2.AccessTokenStrategy.
func (s *accessStrategy) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	if c, ok := r.GetClient().(*clients.Client); ok && c.JWTAccessTokens() {
		return s.p.mintAccessJWT(ctx, c, r)
	}
	return s.prefixedStrategy.GenerateAccessToken(ctx, r)
}

// AccessTokenSignature implements oauth2.AccessTokenStrategy: a JWT access token is stored under
// its jti (read here without verifying the token: every reader verifies it after the lookup).
func (s *accessStrategy) AccessTokenSignature(ctx context.Context, token string) string {
	if jwtShaped(token) {
		return unverifiedJTI(token)
	}
	return s.prefixedStrategy.AccessTokenSignature(ctx, token)
}

// ValidateAccessToken implements oauth2.AccessTokenStrategy: a JWT access token must be one of
// ours (signed by a current key, typ at+jwt, our iss) and, as fosite checks an opaque one,
// unexpired by its stored request.
func (s *accessStrategy) ValidateAccessToken(ctx context.Context, r fosite.Requester, token string) error {
	if !jwtShaped(token) {
		return s.prefixedStrategy.ValidateAccessToken(ctx, r, token)
	}
	if _, err := s.p.verifyAccessJWT(token); err != nil {
		return fosite.ErrTokenSignatureMismatch.WithWrap(err).WithDebug(err.Error())
	}
	exp := r.GetSession().GetExpiresAt(fosite.AccessToken)
	if exp.IsZero() {
		exp = r.GetRequestedAt().Add(s.p.cfg.Lifespans.AccessToken)
	}
	if !time.Now().Before(exp) {
		return fosite.ErrTokenExpired.WithHintf("Access token expired at '%s'.", exp)
	}
	return nil
}

// newJTI is a UUIDv7 (RFC 9562) carrying t to 1/4096 of a millisecond (the 12 bits after the
// version hold the fraction of the millisecond, RFC 9562 §6.2 method 3), rounded down, so a
// cut-off taken an instant before a token request never ends that token.
func newJTI(t time.Time) (uuid.UUID, error) {
	var u uuid.UUID
	if _, err := rand.Read(u[8:]); err != nil {
		return u, fmt.Errorf("making a jti: %w", err)
	}
	ns := t.UnixNano()
	ms, frac := ns/1e6, ns%1e6
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(ms))
	copy(u[:6], b[2:])
	sub := frac * 4096 / 1e6 // 0..4095
	u[6] = 0x70 | byte(sub>>8)
	u[7] = byte(sub)
	u[8] = 0x80 | u[8]&0x3f
	return u, nil
}

// jtiTime is the time a jti of newJTI carries.
func jtiTime(u uuid.UUID) time.Time {
	var b [8]byte
	copy(b[2:], u[:6])
	ms := int64(binary.BigEndian.Uint64(b[:]))
	sub := int64(u[6]&0x0f)<<8 | int64(u[7])
	return time.Unix(0, ms*1e6+sub*1e6/4096)
}

// jtiOf reads a stored access token's signature as the jti of a JWT access token; an opaque
// token's signature (43 characters of base64url) never parses.
func jtiOf(signature string) (uuid.UUID, bool) {
	if len(signature) != 36 {
		return uuid.UUID{}, false
	}
	u, err := uuid.Parse(signature)
	return u, err == nil && u.Version() == 7
}

// unverifiedJTI is the jti of a JWT-shaped token in its canonical form, or "".
func unverifiedJTI(token string) string {
	_, rest, _ := strings.Cut(token, ".")
	payload, _, _ := strings.Cut(rest, ".")
	data, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return ""
	}
	var c struct {
		JTI string `json:"jti"`
	}
	if json.Unmarshal(data, &c) != nil {
		return ""
	}
	if u, ok := jtiOf(c.JTI); ok && u.String() == c.JTI {
		return c.JTI
	}
	return ""
}

// mintAccessJWT makes the JWT access token of r for client c, and the signature it is stored
// under (its jti).
func (p *Provider) mintAccessJWT(ctx context.Context, c *clients.Client, r fosite.Requester) (string, string, error) {
	sess, ok := r.GetSession().(*Session)
	if !ok {
		return "", "", fmt.Errorf("minting a JWT access token: unexpected session type %T", r.GetSession())
	}
	jti, err := newJTI(r.GetRequestedAt())
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	exp := sess.GetExpiresAt(fosite.AccessToken)
	if exp.IsZero() {
		exp = now.Add(p.cfg.Lifespans.AccessToken)
	}
	aud := slices.Clone([]string(r.GetGrantedAudience()))
	if len(aud) == 0 {
		// never the client id alone: that is an ID token's audience, and a relying-party library
		// that ignores typ would take the access token for one (RFC 8725 §2.8). The userinfo
		// endpoint is what a token without an audience is for; it opens no gated site.
		aud = []string{p.cfg.Issuer + PathUserinfo}
	}
	sub := sess.Subject
	if sub == "" {
		sub = c.GetID()
	}
	claims := jwt.MapClaims{
		"iss":       p.cfg.Issuer,
		"sub":       sub,
		"aud":       aud,
		"client_id": c.GetID(),
		"jti":       jti.String(),
		"iat":       now.Unix(),
		"exp":       exp.Unix(),
	}
	if scopes := r.GetGrantedScopes(); len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
		claims["scp"] = slices.Clone([]string(scopes))
	}
	if ic := sess.Claims; ic != nil {
		if !ic.AuthTime.IsZero() {
			claims["auth_time"] = ic.AuthTime.Unix()
		}
		if ic.AuthenticationContextClassReference != "" {
			claims["acr"] = ic.AuthenticationContextClassReference
		}
		if len(ic.AuthenticationMethodsReferences) > 0 {
			claims["amr"] = slices.Clone(ic.AuthenticationMethodsReferences)
		}
	}
	if sid := p.sidOf(sess.BrowserSession); sid != "" {
		claims["sid"] = sid
	}
	if !sess.ClientCredentials && sess.Username != "" {
		sealed, err := p.sealUser(sess.Username, sess.TwoFactor)
		if err != nil {
			return "", "", err
		}
		claims[userClaim] = sealed
	}
	alg, kid := c.AccessTokenSigning()
	token, _, err := p.signer.Generate(ctx, claims, &jwt.Headers{Extra: map[string]any{"typ": "at+jwt", "kid": kid, "alg": alg}})
	if err != nil {
		return "", "", fmt.Errorf("signing the JWT access token of client %s: %w", c.GetID(), err)
	}
	return token, jti.String(), nil
}

// userSealer is the AEAD of the portcullis_user claim, keyed by the HMAC secret.
func userSealer(secret []byte) cipher.AEAD {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("portcullis jwt access token user\x00"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

// sealUser seals a username and its second-factor flag for the portcullis_user claim.
func (p *Provider) sealUser(username string, twoFactor bool) (string, error) {
	plain := make([]byte, 1, 1+len(username))
	if twoFactor {
		plain[0] = 1
	}
	plain = append(plain, username...)
	out := make([]byte, p.userAEAD.NonceSize(), p.userAEAD.NonceSize()+len(plain)+p.userAEAD.Overhead())
	if _, err := rand.Read(out); err != nil {
		return "", fmt.Errorf("sealing the user of a JWT access token: %w", err)
	}
	out = p.userAEAD.Seal(out, out, plain, []byte(userClaim))
	return base64.RawURLEncoding.EncodeToString(out), nil
}

// openUser opens a portcullis_user claim.
func (p *Provider) openUser(sealed string) (username string, twoFactor bool, err error) {
	data, err := base64.RawURLEncoding.DecodeString(sealed)
	n := p.userAEAD.NonceSize()
	if err != nil || len(data) < n {
		return "", false, errors.New("malformed user claim")
	}
	plain, err := p.userAEAD.Open(nil, data[:n], data[n:], []byte(userClaim))
	if err != nil || len(plain) < 2 || plain[0] > 1 {
		return "", false, errors.New("the user claim was not sealed under the current HMAC secret")
	}
	return string(plain[1:]), plain[0] == 1, nil
}

// accessClaims are the claims the gate reads of a JWT access token.
type accessClaims struct {
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	Aud      audClaim `json:"aud"`
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope"`
	JTI      string   `json:"jti"`
	Exp      float64  `json:"exp"` // a NumericDate may have a fraction
	Sid      string   `json:"sid"`
	User     string   `json:"portcullis_user"`
}

// audClaim is an aud claim: one string or an array of them.
type audClaim []string

// UnmarshalJSON implements json.Unmarshaler.
func (a *audClaim) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = audClaim{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("aud: %w", err)
	}
	*a = many
	return nil
}

// jwtEntry is a verified, decoded JWT access token kept for the gate's hot path.
type jwtEntry struct {
	cachedToken
	jti       uuid.UUID
	jtiString string // the store key's signature, for the fallback read
	sid       string
}

// errNotAccessJWT and the others are why a JWT of ours is refused, before any store read.
var (
	errNotAccessJWT = &InvalidTokenError{"The token is not an access token."}
	errForeignKey   = &InvalidTokenError{"The access token is not signed by a current key of this provider."}
	errBadSignature = &InvalidTokenError{"The access token's signature does not verify."}
	errBadClaims    = &InvalidTokenError{"The access token is malformed."}
)

// verifyAccessJWT classifies and verifies a JWT-shaped Bearer value. It is not ours
// (ErrNotOurToken) unless it decodes as a JWT whose iss is this provider's issuer: an upstream's
// own token, or another issuer's JWT, passes through as any foreign Bearer value does. One that
// names our issuer is ours, and refused (*InvalidTokenError) unless it is an access token (typ
// at+jwt), signed by one of the provider's current keys (the kid's, with that key's algorithm, so
// never "none") and its signature verifies, with the claims the gate needs.
func (p *Provider) verifyAccessJWT(token string) (*jwtEntry, error) {
	if !jwtShaped(token) {
		return nil, ErrNotOurToken
	}
	head, rest, _ := strings.Cut(token, ".")
	payload, _, _ := strings.Cut(rest, ".")
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}
	var cl accessClaims
	if decodeSegment(head, &hdr) != nil {
		return nil, ErrNotOurToken
	}
	if err := decodeSegment(payload, &cl); err != nil {
		var iss struct {
			Iss any `json:"iss"`
		}
		if decodeSegment(payload, &iss) == nil && iss.Iss == p.cfg.Issuer {
			return nil, errBadClaims // ours by its iss, with claims of the wrong types
		}
		return nil, ErrNotOurToken
	}
	if cl.Iss != p.cfg.Issuer {
		return nil, ErrNotOurToken
	}
	if typ := strings.ToLower(hdr.Typ); typ != "at+jwt" && typ != "application/at+jwt" {
		return nil, errNotAccessJWT
	}
	i := slices.IndexFunc(p.cfg.Keys, func(k *keys.Key) bool { return k.ID == hdr.Kid })
	if i < 0 || p.cfg.Keys[i].Algorithm != hdr.Alg {
		return nil, errForeignKey
	}
	k := p.cfg.Keys[i]
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(k.Algorithm)})
	if err != nil {
		return nil, errBadClaims
	}
	if _, err := jws.Verify(k.Signer.Public()); err != nil {
		return nil, errBadSignature
	}
	jti, ok := jtiOf(cl.JTI)
	if !ok || cl.ClientID == "" || cl.Exp < 1 || cl.Exp > 1<<40 {
		return nil, errBadClaims
	}
	e := &jwtEntry{jti: jti, jtiString: jti.String(), sid: cl.Sid}
	e.token = token
	e.issuedAt = jtiTime(jti)
	scopes := strings.Fields(cl.Scope)
	e.identity = BearerIdentity{
		ClientID:    cl.ClientID,
		Scopes:      scopes,
		ScopeString: strings.Join(scopes, " "),
		ExpiresAt:   time.Unix(int64(cl.Exp), 0),
	}
	e.hasScope = slices.Contains(scopes, clients.ScopeBearerAuthz)
	e.audience = audience.ParseList(cl.Aud)
	if cl.User != "" {
		name, twoFactor, err := p.openUser(cl.User)
		if err != nil {
			return nil, &InvalidTokenError{"The access token was issued under another HMAC secret."}
		}
		e.identity.Username, e.identity.TwoFactor, e.identity.SubjectID = name, twoFactor, name
	} else {
		e.identity.ClientCredentials = true
		e.identity.SubjectID = "oauth2:client:" + cl.ClientID
	}
	return e, nil
}

// decodeSegment decodes one base64url segment of a JWS as JSON into v.
func decodeSegment(seg string, v any) error {
	data, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// ourJWT reports whether token is a JWT access token of ours whose signature verifies (expired
// or revoked or not): one the revocation endpoint may revoke.
func (p *Provider) ourJWT(token string) bool {
	_, err := p.verifyAccessJWT(token)
	return err == nil
}

// jwtCache remembers verified JWT access tokens by their signature (cacheKey), so the gate verifies a
// signature once per token rather than on every request. What it remembers never changes (a
// signature verified under this config's keys stays verified; its claims are signed): whether
// the token was revoked since is asked of Revocations on every request. One belongs to each
// Provider, so a config with other keys starts empty.
type jwtCache struct {
	mu      sync.RWMutex
	entries map[string]*jwtEntry
	max     int
}

func newJWTCache(max int) *jwtCache {
	return &jwtCache{entries: map[string]*jwtEntry{}, max: max}
}

// cacheKey is the key of token in a jwtCache: the last 24 characters of its signature (18
// bytes of it), which spread as well as the whole and hash in a few nanoseconds where an RS256
// signature's 342 characters take a tenth of the check. Two tokens with the same key only miss.
func cacheKey(token string) string { return token[max(0, len(token)-24):] }

// get returns the verified token whose cache key is key, when it is token. The comparison need
// not take constant time: an entry is only reached with its signature's last 18 bytes, which
// no one has without the token; what a timing could then tell is the token's header and claims,
// which its holder reads anyway.
func (c *jwtCache) get(key, token string) *jwtEntry {
	c.mu.RLock()
	e := c.entries[key]
	c.mu.RUnlock()
	if e == nil || e.token != token {
		return nil
	}
	return e
}

// put remembers e under key. When full, it drops expired entries and then a tenth of the rest.
func (c *jwtCache) put(key string, e *jwtEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		now := time.Now()
		n := c.max / 10
		for k, old := range c.entries {
			if n <= 0 && now.Before(old.identity.ExpiresAt) {
				continue
			}
			delete(c.entries, k)
			n--
		}
	}
	c.entries[key] = e
}

// jwtCacheSize bounds the verified JWT access tokens a Provider remembers.
const jwtCacheSize = 1 << 14
