package oauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/portcullis-auth/portcullis/oidcprovider/keys"
)

// keySigner is fosite's jwt.Signer over the provider's keys: it signs with the key the token's
// "kid" header names (the client's id_token_signed_response_alg/key_id picked it), and verifies
// a token signed by any of them (an id_token_hint).
type keySigner struct {
	keys []*keys.Key
}

var _ jwt.Signer = (*keySigner)(nil)

// key returns the key that signs for (kid, alg): the key with id kid, else the first key of alg,
// else the first RS256 key, else the first key. Retired keys sign nothing.
func (s *keySigner) key(kid, alg string) (*keys.Key, error) {
	for _, k := range s.keys {
		if kid != "" && k.ID == kid && !k.Retired {
			return k, nil
		}
	}
	for _, want := range []string{alg, "RS256"} {
		for _, k := range s.keys {
			if want != "" && k.Algorithm == want && !k.Retired {
				return k, nil
			}
		}
	}
	for _, k := range s.keys {
		if !k.Retired {
			return k, nil
		}
	}
	return nil, errors.New("no signing key")
}

// Generate implements jwt.Signer.
func (s *keySigner) Generate(_ context.Context, claims jwt.MapClaims, header jwt.Mapper) (string, string, error) {
	h := header.ToMap()
	kid, _ := h["kid"].(string)
	alg, _ := h["alg"].(string)
	if hs, ok := header.(*jwt.Headers); ok && alg == "" {
		alg, _ = hs.Get("alg").(string) // ToMap leaves alg out
	}
	k, err := s.key(kid, alg)
	if err != nil {
		return "", "", err
	}
	t := jwt.NewWithClaims(jose.SignatureAlgorithm(k.Algorithm), claims)
	for name, v := range h {
		if name != "alg" {
			t.Header[name] = v
		}
	}
	t.Header["kid"] = k.ID
	raw, err := t.SignedString(k.Signer)
	if err != nil {
		return "", "", fmt.Errorf("signing a JWT with key %s: %w", k.ID, err)
	}
	return raw, raw[strings.LastIndexByte(raw, '.')+1:], nil
}

// Decode implements jwt.Signer: it verifies the signature with the key the header names.
//
// It reads id_token_hint values (fosite's prompt and ID token checks, RP-initiated logout), so
// it takes only what can be an ID token: no typ, or typ JWT. Every other JWT the provider signs
// names itself (at+jwt, token-introspection+jwt, logout+jwt) and must not pass for an ID token
// (RFC 8725 §3.11).
func (s *keySigner) Decode(_ context.Context, token string) (*jwt.Token, error) {
	return jwt.Parse(token, func(t *jwt.Token) (any, error) {
		if typ, ok := t.Header["typ"]; ok {
			if s, _ := typ.(string); !strings.EqualFold(s, "JWT") {
				return nil, errors.New("the token is not an ID token (its typ is not JWT)")
			}
		}
		kid, _ := t.Header["kid"].(string)
		for _, k := range s.keys {
			if k.ID == kid && string(t.Method) == k.Algorithm {
				return k.Signer.Public(), nil
			}
		}
		return nil, errors.New("the token was not signed by a key of this provider")
	})
}

// Validate implements jwt.Signer.
func (s *keySigner) Validate(ctx context.Context, token string) (string, error) {
	if _, err := s.Decode(ctx, token); err != nil {
		return "", err
	}
	return s.GetSignature(ctx, token)
}

// GetSignature implements jwt.Signer.
func (s *keySigner) GetSignature(_ context.Context, token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("the token is not a compact JWS")
	}
	return parts[2], nil
}

// Hash implements jwt.Signer (SHA-256; the ID token helper picks the hash by the alg header).
func (s *keySigner) Hash(_ context.Context, in []byte) ([]byte, error) {
	h := sha256.Sum256(in)
	return h[:], nil
}

// GetSigningMethodLength implements jwt.Signer.
func (s *keySigner) GetSigningMethodLength(context.Context) int { return sha256.Size }

// idTokenStrategy is fosite's ID token strategy with two additions: an ID token issued at a
// refresh gets a fresh expiry (the stored claims keep the first one), and an ID token issued
// through a portal session carries its sid and is remembered for back-channel logout.
type idTokenStrategy struct {
	openid.DefaultStrategy
	p *Provider
}

// GenerateIDToken implements openid.OpenIDConnectTokenStrategy: in the code flow's token
// answer, the implicit and hybrid flows' authorization answer, and at a refresh.
func (s *idTokenStrategy) GenerateIDToken(ctx context.Context, lifespan time.Duration, r fosite.Requester) (string, error) {
	sess, ok := r.GetSession().(*Session)
	if ok {
		claims := sess.IDTokenClaims()
		claims.ExpiresAt = time.Time{}
		if sid := s.p.sidOf(sess.BrowserSession); sid != "" {
			if claims.Extra == nil {
				claims.Extra = map[string]any{}
			}
			claims.Extra["sid"] = sid
		}
	}
	token, err := s.DefaultStrategy.GenerateIDToken(ctx, lifespan, r)
	if err != nil || !ok {
		return token, err
	}
	if err := s.p.rememberIDToken(ctx, r, sess); err != nil {
		return "", err
	}
	return token, nil
}
