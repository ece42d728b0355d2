package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// tokenRecord is a stored fosite request.
type tokenRecord struct {
	RequestID       string     `json:"id"`
	RequestedAt     time.Time  `json:"requested_at"`
	ClientID        string     `json:"client_id"`
	Scopes          []string   `json:"scopes,omitempty"`
	GrantedScopes   []string   `json:"granted_scopes,omitempty"`
	Audience        []string   `json:"audience,omitempty"`
	GrantedAudience []string   `json:"granted_audience,omitempty"`
	Form            url.Values `json:"form,omitempty"`
	Session         *Session   `json:"session"`
	Active          bool       `json:"active"`
}

// formKeysKept are the request parameters worth keeping with a token; credentials, codes and
// assertions are never stored.
var formKeysKept = []string{"grant_type", "scope", "audience", "resource", "redirect_uri", "response_type", "response_mode", "nonce", "state", "prompt", "max_age", "claims", "code_challenge", "code_challenge_method"}

func tokenKey(kind, signature string) []byte { return []byte("tok/" + kind + "/" + signature) }
func requestIndexKey(requestID, kind, signature string) []byte {
	return []byte("req/" + requestID + "/" + kind + "/" + signature)
}
func requestIndexPrefix(requestID, kind string) []byte {
	return []byte("req/" + requestID + "/" + kind + "/")
}

// tokenStorage implements fosite's storage interfaces on a KV, resolving clients through the
// current registry.
type tokenStorage struct {
	kv      store.KV
	tokens  *TokenCache // forgets an access token the moment it is deleted
	clients func(id string) (*clients.Client, bool)
	cutoffs *ClientCutoffs // tokens of a client issued before its cut-off count as revoked
	// shared: kv is shared by several nodes (store.Changes), so deleting an access token also
	// deletes its end key (AccessTokenEndPrefix), which every node's TokenCache watches.
	shared bool
	// refreshLifespan is the provider-wide refresh token lifespan, for records stored without
	// an expiry (see load).
	refreshLifespan time.Duration
	// revocations learn of every JWT access token ended before its expiry, for the gate (nil:
	// the gate reads the store). accessLifespan is the longest an access token lives, how long
	// a revocation is kept when the token's expiry is not at hand.
	revocations    *Revocations
	accessLifespan time.Duration
}

var (
	_ fosite.Storage                     = (*tokenStorage)(nil)
	_ oauth2.CoreStorage                 = (*tokenStorage)(nil)
	_ oauth2.TokenRevocationStorage      = (*tokenStorage)(nil)
	_ openid.OpenIDConnectRequestStorage = (*tokenStorage)(nil)
	_ pkce.PKCERequestStorage            = (*tokenStorage)(nil)
)

// GetClient implements fosite.ClientManager.
func (s *tokenStorage) GetClient(_ context.Context, id string) (fosite.Client, error) {
	if c, ok := s.clients(id); ok {
		return c, nil
	}
	return nil, fosite.ErrNotFound
}

// ClientAssertionJWTValid implements fosite.ClientManager.
func (s *tokenStorage) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	_, err := s.kv.Get(ctx, []byte("jti/"+jti))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	return fosite.ErrJTIKnown
}

// SetClientAssertionJWT implements fosite.ClientManager.
func (s *tokenStorage) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	ttl := time.Until(exp)
	if ttl <= 0 {
		return nil
	}
	return s.kv.Put(ctx, store.Entry{Key: []byte("jti/" + jti), Value: []byte{1}, TTL: ttl})
}

func (s *tokenStorage) create(ctx context.Context, kind string, tt fosite.TokenType, signature string, req fosite.Requester) error {
	sess, ok := req.GetSession().(*Session)
	if !ok {
		return fmt.Errorf("storing token: unexpected session type %T", req.GetSession())
	}
	// The authorization request's parameters are read back with a code (its redirect_uri, nonce,
	// max_age…); a client_credentials access token is read only by the gate, introspection and
	// revocation, none of which looks at its request's form, so it keeps none.
	var form url.Values
	if !(kind == kindAccess && sess.ClientCredentials) {
		form = url.Values{}
		for _, k := range formKeysKept {
			if v, ok := req.GetRequestForm()[k]; ok {
				form[k] = v
			}
		}
	}
	rec := tokenRecord{
		RequestID:       req.GetID(),
		RequestedAt:     req.GetRequestedAt(),
		ClientID:        req.GetClient().GetID(),
		Scopes:          req.GetRequestedScopes(),
		GrantedScopes:   req.GetGrantedScopes(),
		Audience:        req.GetRequestedAudience(),
		GrantedAudience: req.GetGrantedAudience(),
		Form:            form,
		Session:         sess,
		Active:          true,
	}
	data, err := marshalRecord(&rec)
	if err != nil {
		return fmt.Errorf("encoding token record: %w", err)
	}
	ttl := time.Until(sess.GetExpiresAt(tt))
	if sess.GetExpiresAt(tt).IsZero() {
		ttl = 0
	} else if ttl <= 0 {
		ttl = time.Second
	}
	entries := []store.Entry{{Key: tokenKey(kind, signature), Value: data, TTL: ttl}}
	if indexedByRequest(kind, sess) {
		entries = append(entries, store.Entry{Key: requestIndexKey(rec.RequestID, kind, signature), Value: []byte{1}, TTL: ttl})
	}
	if sess.BrowserSession != "" && (kind == kindAccess || kind == kindCode) {
		entries = append(entries, store.Entry{Key: browserIndexKey(sess.BrowserSession, kind, signature), Value: []byte{1}, TTL: ttl})
	}
	return s.kv.Put(ctx, entries...)
}

// indexedByRequest says whether a token is listed under its request id, for fosite's
// revocations by request (a refresh token's rotation ends its access token, a reused code ends
// what it issued, revoking a refresh token ends its access tokens). A client_credentials access
// token has no code and no refresh token beside it, so only the revocation endpoint ends it,
// and that has the token itself (ServeRevocation deletes it by signature): it goes without the
// index, which would take a third of what each token costs in the store.
func indexedByRequest(kind string, sess *Session) bool {
	return !(kind == kindAccess && sess.ClientCredentials)
}

// browserIndexKey lists the access tokens and codes a portal session (by its reference)
// authorized, so signing out ends them.
func browserIndexKey(ref, kind, signature string) []byte {
	return []byte("bsess/" + ref + "/" + kind + "/" + signature)
}

// EndBrowserSession ends the access tokens and unused codes that applications obtained through
// the portal session ref (session.Ref), and the device approvals not yet collected, when its
// user signs out, and queues a back-channel logout for each client that got an ID token in it.
// Refresh tokens, granted for offline access, outlive the browser session. It returns how many
// it ended.
func (p *Provider) EndBrowserSession(ctx context.Context, ref string) (int, error) {
	p.enqueueBackchannelLogouts(ctx, ref)
	prefix := []byte("bsess/" + ref + "/")
	idx, err := p.cfg.KV.Keys(ctx, prefix)
	if err != nil {
		return 0, err
	}
	if p.cfg.Revocations != nil && ref != "" {
		// the JWT access tokens of the session end in the gate's memory, those the listing
		// below does not see included (issued while it ran)
		now := time.Now()
		if err := p.cfg.Revocations.EndSession(ctx, p.cfg.KV, p.sidOf(ref), now, now.Add(p.cfg.LongestAccessTokenLifespan)); err != nil {
			return 0, err
		}
	}
	n := 0
	for _, k := range idx {
		kind, sig, ok := strings.Cut(string(k[len(prefix):]), "/")
		if !ok {
			continue
		}
		switch kind {
		case kindAccess:
			err = p.storage.delete(ctx, kindAccess, sig)
		case kindCode:
			err = p.storage.deactivate(ctx, kindCode, fosite.AuthorizeCode, sig)
		case kindDevice:
			err = p.endDeviceApproval(ctx, sig)
		}
		if err != nil && !errors.Is(err, fosite.ErrNotFound) {
			return n, err
		}
		n++
	}
	return n, p.cfg.KV.Delete(ctx, idx...)
}

// load reads a record; a missing record or client is fosite.ErrNotFound.
func (s *tokenStorage) load(ctx context.Context, kind, signature string, into fosite.Session) (*fosite.Request, *tokenRecord, error) {
	data, err := s.kv.Get(ctx, tokenKey(kind, signature))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, fosite.ErrNotFound
	} else if err != nil {
		return nil, nil, err
	}
	var rec tokenRecord
	if err := unmarshalRecord(data, &rec); err != nil {
		return nil, nil, fmt.Errorf("decoding token record: %w", err)
	}
	client, ok := s.clients(rec.ClientID)
	if !ok {
		return nil, nil, fosite.ErrNotFound
	}
	sess := rec.Session
	if sess == nil {
		sess = &Session{}
	}
	if target, ok := into.(*Session); ok && target != nil {
		// The record is read into the caller's session as fosite's SQL stores decode it: the
		// stored fields replace the caller's, but expiries the caller has set stay unless the
		// record has its own. fosite sets the new access and refresh tokens' expiries on the
		// session before it reads the code a second time; replacing them would store those
		// tokens without an expiry.
		set := target.ExpiresAt
		*target = *sess
		if len(set) > 0 {
			target.ExpiresAt = maps.Clone(set)
			maps.Copy(target.ExpiresAt, sess.ExpiresAt)
		}
		sess = target
	}
	if kind == kindRefresh && sess.GetExpiresAt(fosite.RefreshToken).IsZero() && s.refreshLifespan > 0 {
		// Earlier versions stored code-flow refresh tokens without an expiry, which fosite
		// reads as unlimited: they last the refresh token lifespan from their issue.
		sess.SetExpiresAt(fosite.RefreshToken, rec.RequestedAt.Add(s.refreshLifespan))
	}
	r := &fosite.Request{
		ID:                rec.RequestID,
		RequestedAt:       rec.RequestedAt,
		Client:            client,
		RequestedScope:    rec.Scopes,
		GrantedScope:      rec.GrantedScopes,
		RequestedAudience: rec.Audience,
		GrantedAudience:   rec.GrantedAudience,
		Form:              rec.Form,
		Session:           sess,
	}
	return r, &rec, nil
}

func (s *tokenStorage) delete(ctx context.Context, kind, signature string) error {
	if kind == kindAccess {
		defer s.tokens.Forget(signature)
	}
	_, rec, err := s.load(ctx, kind, signature, nil)
	if kind == kindAccess && err == nil {
		// a JWT access token is revoked in the gate's memory (and the store) before its record
		// goes: the gate does not read the record
		exp := time.Time{}
		if rec.Session != nil {
			exp = rec.Session.GetExpiresAt(fosite.AccessToken)
		}
		if err := s.revokeJWT(ctx, signature, exp); err != nil {
			return err
		}
	}
	keys := [][]byte{tokenKey(kind, signature)}
	if err == nil {
		keys = append(keys, requestIndexKey(rec.RequestID, kind, signature))
	}
	if kind == kindAccess && s.shared {
		keys = append(keys, accessTokenEndKey(signature))
	}
	return s.kv.Delete(ctx, keys...)
}

// revokeJWT records the revocation of the access token stored under signature, when it is a JWT
// access token (its signature is its jti), until exp (zero: the longest an access token lives).
func (s *tokenStorage) revokeJWT(ctx context.Context, signature string, exp time.Time) error {
	jti, ok := jtiOf(signature)
	if !ok || s.revocations == nil {
		return nil
	}
	if exp.IsZero() {
		exp = time.Now().Add(s.accessLifespan)
	}
	return s.revocations.RevokeToken(ctx, s.kv, jti, exp)
}

// AccessTokenEndPrefix is the prefix of the keys that announce the end of access tokens on a
// store several nodes share: never written, only deleted beside a token's record, so the
// decoded-token caches of every node can watch the ends of tokens (store.Changes sends every
// deleted key) without watching the records' prefix, which would have every new token's commit
// notify every node (a notifying commit costs several times a plain one on PostgreSQL).
const AccessTokenEndPrefix = "tok-end/" + kindAccess + "/"

func accessTokenEndKey(signature string) []byte { return []byte(AccessTokenEndPrefix + signature) }

func (s *tokenStorage) revokeRequest(ctx context.Context, requestID, kind string) error {
	idx, err := s.kv.Keys(ctx, requestIndexPrefix(requestID, kind))
	if err != nil {
		return err
	}
	keys := make([][]byte, 0, 2*len(idx))
	prefix := len(requestIndexPrefix(requestID, kind))
	for _, k := range idx {
		sig := string(k[prefix:])
		keys = append(keys, k, tokenKey(kind, sig))
		if kind == kindAccess {
			if err := s.revokeJWT(ctx, sig, time.Time{}); err != nil {
				return err
			}
			defer s.tokens.Forget(sig)
			if s.shared {
				keys = append(keys, accessTokenEndKey(sig))
			}
		}
	}
	if len(keys) == 0 {
		return nil
	}
	return s.kv.Delete(ctx, keys...)
}

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *tokenStorage) CreateAuthorizeCodeSession(ctx context.Context, code string, req fosite.Requester) error {
	return s.create(ctx, kindCode, fosite.AuthorizeCode, code, req)
}

// GetAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *tokenStorage) GetAuthorizeCodeSession(ctx context.Context, code string, sess fosite.Session) (fosite.Requester, error) {
	r, rec, err := s.load(ctx, kindCode, code, sess)
	if err != nil {
		return nil, err
	}
	// a code issued before the user's password changed gives no tokens
	if revoked, err := s.userRevoked(ctx, r); err != nil {
		return nil, err
	} else if revoked {
		return nil, fosite.ErrNotFound
	}
	if !rec.Active {
		return r, fosite.ErrInvalidatedAuthorizeCode
	}
	return r, nil
}

// InvalidateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage: the record stays,
// marked used, so a replay is recognised.
func (s *tokenStorage) InvalidateAuthorizeCodeSession(ctx context.Context, code string) error {
	return s.deactivate(ctx, kindCode, fosite.AuthorizeCode, code)
}

// deactivate marks a stored token spent, keeping it until it would have expired (at least a
// minute) so that presenting it again is recognised.
func (s *tokenStorage) deactivate(ctx context.Context, kind string, tt fosite.TokenType, signature string) error {
	data, err := s.kv.Get(ctx, tokenKey(kind, signature))
	if errors.Is(err, store.ErrNotFound) {
		return fosite.ErrNotFound
	} else if err != nil {
		return err
	}
	var rec tokenRecord
	if err := unmarshalRecord(data, &rec); err != nil {
		return fmt.Errorf("decoding token record: %w", err)
	}
	if !rec.Active {
		return nil
	}
	rec.Active = false
	data, err = marshalRecord(&rec)
	if err != nil {
		return err
	}
	ttl := time.Minute
	if rec.Session != nil {
		if until := time.Until(rec.Session.GetExpiresAt(tt)); until > ttl {
			ttl = until
		}
	}
	return s.kv.Put(ctx,
		store.Entry{Key: tokenKey(kind, signature), Value: data, TTL: ttl},
		store.Entry{Key: requestIndexKey(rec.RequestID, kind, signature), Value: []byte{1}, TTL: ttl},
	)
}

// codeKey names a record kept beside an authorization code; fosite hands the OpenID Connect
// storage the code itself, so it is hashed.
func codeKey(code string) string {
	h := sha256.Sum256([]byte(code))
	return hex.EncodeToString(h[:])
}

// CreateOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *tokenStorage) CreateOpenIDConnectSession(ctx context.Context, code string, req fosite.Requester) error {
	return s.create(ctx, kindOIDC, fosite.AuthorizeCode, codeKey(code), req)
}

// GetOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *tokenStorage) GetOpenIDConnectSession(ctx context.Context, code string, req fosite.Requester) (fosite.Requester, error) {
	r, _, err := s.load(ctx, kindOIDC, codeKey(code), req.GetSession())
	if errors.Is(err, fosite.ErrNotFound) {
		return nil, openid.ErrNoSessionFound
	}
	return r, err
}

// DeleteOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *tokenStorage) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return s.delete(ctx, kindOIDC, codeKey(code))
}

// CreatePKCERequestSession implements pkce.PKCERequestStorage.
func (s *tokenStorage) CreatePKCERequestSession(ctx context.Context, signature string, req fosite.Requester) error {
	return s.create(ctx, kindPKCE, fosite.AuthorizeCode, signature, req)
}

// GetPKCERequestSession implements pkce.PKCERequestStorage.
func (s *tokenStorage) GetPKCERequestSession(ctx context.Context, signature string, sess fosite.Session) (fosite.Requester, error) {
	r, _, err := s.load(ctx, kindPKCE, signature, sess)
	return r, err
}

// DeletePKCERequestSession implements pkce.PKCERequestStorage. It keeps the record: fosite
// v0.47 deletes it before it checks the verifier, so a first exchange with a wrong verifier
// would leave the code exchangeable with none at all. The record expires with its code, which
// is spent by the first good exchange.
func (s *tokenStorage) DeletePKCERequestSession(context.Context, string) error {
	return nil
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *tokenStorage) CreateAccessTokenSession(ctx context.Context, signature string, req fosite.Requester) error {
	return s.create(ctx, kindAccess, fosite.AccessToken, signature, req)
}

// GetAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *tokenStorage) GetAccessTokenSession(ctx context.Context, signature string, sess fosite.Session) (fosite.Requester, error) {
	r, _, err := s.load(ctx, kindAccess, signature, sess)
	if err != nil {
		return nil, err
	}
	if revoked, err := s.cutoffs.Revoked(ctx, r.Client.GetID(), r.RequestedAt); err != nil {
		return nil, err
	} else if revoked {
		return nil, fosite.ErrNotFound
	}
	if revoked, err := s.userRevoked(ctx, r); err != nil {
		return nil, err
	} else if revoked {
		return nil, fosite.ErrNotFound
	}
	return r, nil
}

// DeleteAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *tokenStorage) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	return s.delete(ctx, kindAccess, signature)
}

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *tokenStorage) CreateRefreshTokenSession(ctx context.Context, signature string, req fosite.Requester) error {
	return s.create(ctx, kindRefresh, fosite.RefreshToken, signature, req)
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage. A spent (rotated) or revoked
// refresh token is fosite.ErrInactiveToken with its request, so a replay revokes its family.
func (s *tokenStorage) GetRefreshTokenSession(ctx context.Context, signature string, sess fosite.Session) (fosite.Requester, error) {
	r, rec, err := s.load(ctx, kindRefresh, signature, sess)
	if err != nil {
		return nil, err
	}
	if revoked, err := s.cutoffs.Revoked(ctx, r.Client.GetID(), r.RequestedAt); err != nil {
		return nil, err
	} else if revoked {
		return nil, fosite.ErrNotFound
	}
	if revoked, err := s.userRevoked(ctx, r); err != nil {
		return nil, err
	} else if revoked {
		return nil, fosite.ErrNotFound
	}
	if !rec.Active {
		return r, fosite.ErrInactiveToken
	}
	return r, nil
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *tokenStorage) DeleteRefreshTokenSession(ctx context.Context, signature string) error {
	return s.delete(ctx, kindRefresh, signature)
}

// RevokeRefreshToken implements oauth2.TokenRevocationStorage: the request's refresh tokens
// are marked spent, not deleted, so presenting one again is recognised as a replay until it
// would have expired.
func (s *tokenStorage) RevokeRefreshToken(ctx context.Context, requestID string) error {
	idx, err := s.kv.Keys(ctx, requestIndexPrefix(requestID, kindRefresh))
	if err != nil {
		return err
	}
	prefix := len(requestIndexPrefix(requestID, kindRefresh))
	for _, k := range idx {
		if err := s.deactivate(ctx, kindRefresh, fosite.RefreshToken, string(k[prefix:])); err != nil && !errors.Is(err, fosite.ErrNotFound) {
			return err
		}
	}
	return nil
}

// RevokeRefreshTokenMaybeGracePeriod implements oauth2.TokenRevocationStorage (no grace period).
func (s *tokenStorage) RevokeRefreshTokenMaybeGracePeriod(ctx context.Context, requestID string, _ string) error {
	return s.RevokeRefreshToken(ctx, requestID)
}

// RevokeAccessToken implements oauth2.TokenRevocationStorage.
func (s *tokenStorage) RevokeAccessToken(ctx context.Context, requestID string) error {
	return s.revokeRequest(ctx, requestID, kindAccess)
}
