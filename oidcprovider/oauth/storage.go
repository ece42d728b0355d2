package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

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
var formKeysKept = []string{"grant_type", "scope", "audience", "resource", "redirect_uri", "response_type", "nonce", "state"}

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
}

var (
	_ fosite.Storage                = (*tokenStorage)(nil)
	_ oauth2.CoreStorage            = (*tokenStorage)(nil)
	_ oauth2.TokenRevocationStorage = (*tokenStorage)(nil)
)

// GetClient implements fosite.ClientManager.
func (s *tokenStorage) GetClient(_ context.Context, id string) (fosite.Client, error) {
	if c, ok := s.clients(id); ok {
		return c, nil
	}
	return nil, fosite.ErrNotFound
}

// ClientAssertionJWTValid implements fosite.ClientManager.
func (s *tokenStorage) ClientAssertionJWTValid(_ context.Context, jti string) error {
	_, err := s.kv.Get([]byte("jti/" + jti))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	return fosite.ErrJTIKnown
}

// SetClientAssertionJWT implements fosite.ClientManager.
func (s *tokenStorage) SetClientAssertionJWT(_ context.Context, jti string, exp time.Time) error {
	ttl := time.Until(exp)
	if ttl <= 0 {
		return nil
	}
	return s.kv.Put(store.Entry{Key: []byte("jti/" + jti), Value: []byte{1}, TTL: ttl})
}

func (s *tokenStorage) create(kind string, tt fosite.TokenType, signature string, req fosite.Requester) error {
	sess, ok := req.GetSession().(*Session)
	if !ok {
		return fmt.Errorf("storing token: unexpected session type %T", req.GetSession())
	}
	form := url.Values{}
	for _, k := range formKeysKept {
		if v, ok := req.GetRequestForm()[k]; ok {
			form[k] = v
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
	data, err := json.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("encoding token record: %w", err)
	}
	ttl := time.Until(sess.GetExpiresAt(tt))
	if sess.GetExpiresAt(tt).IsZero() {
		ttl = 0
	} else if ttl <= 0 {
		ttl = time.Second
	}
	return s.kv.Put(
		store.Entry{Key: tokenKey(kind, signature), Value: data, TTL: ttl},
		store.Entry{Key: requestIndexKey(rec.RequestID, kind, signature), Value: []byte{1}, TTL: ttl},
	)
}

// load reads a record; a missing record or client is fosite.ErrNotFound.
func (s *tokenStorage) load(kind, signature string, into fosite.Session) (*fosite.Request, *tokenRecord, error) {
	data, err := s.kv.Get(tokenKey(kind, signature))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, fosite.ErrNotFound
	} else if err != nil {
		return nil, nil, err
	}
	var rec tokenRecord
	if err := json.Unmarshal(data, &rec); err != nil {
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
		*target = *sess
		sess = target
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

func (s *tokenStorage) delete(kind, signature string) error {
	if kind == kindAccess {
		defer s.tokens.Forget(signature)
	}
	_, rec, err := s.load(kind, signature, nil)
	keys := [][]byte{tokenKey(kind, signature)}
	if err == nil {
		keys = append(keys, requestIndexKey(rec.RequestID, kind, signature))
	}
	return s.kv.Delete(keys...)
}

func (s *tokenStorage) revokeRequest(requestID, kind string) error {
	idx, err := s.kv.Keys(requestIndexPrefix(requestID, kind))
	if err != nil {
		return err
	}
	keys := make([][]byte, 0, 2*len(idx))
	prefix := len(requestIndexPrefix(requestID, kind))
	for _, k := range idx {
		sig := string(k[prefix:])
		keys = append(keys, k, tokenKey(kind, sig))
		if kind == kindAccess {
			defer s.tokens.Forget(sig)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	return s.kv.Delete(keys...)
}

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *tokenStorage) CreateAuthorizeCodeSession(_ context.Context, code string, req fosite.Requester) error {
	return s.create(kindCode, fosite.AuthorizeCode, code, req)
}

// GetAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *tokenStorage) GetAuthorizeCodeSession(_ context.Context, code string, sess fosite.Session) (fosite.Requester, error) {
	r, rec, err := s.load(kindCode, code, sess)
	if err != nil {
		return nil, err
	}
	if !rec.Active {
		return r, fosite.ErrInvalidatedAuthorizeCode
	}
	return r, nil
}

// InvalidateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage: the record stays,
// marked used, so a replay is recognised.
func (s *tokenStorage) InvalidateAuthorizeCodeSession(_ context.Context, code string) error {
	data, err := s.kv.Get(tokenKey(kindCode, code))
	if errors.Is(err, store.ErrNotFound) {
		return fosite.ErrNotFound
	} else if err != nil {
		return err
	}
	var rec tokenRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return fmt.Errorf("decoding token record: %w", err)
	}
	rec.Active = false
	data, err = json.Marshal(&rec)
	if err != nil {
		return err
	}
	ttl := time.Minute
	if rec.Session != nil {
		if until := time.Until(rec.Session.GetExpiresAt(fosite.AuthorizeCode)); until > 0 {
			ttl = until
		}
	}
	return s.kv.Put(store.Entry{Key: tokenKey(kindCode, code), Value: data, TTL: ttl})
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *tokenStorage) CreateAccessTokenSession(_ context.Context, signature string, req fosite.Requester) error {
	return s.create(kindAccess, fosite.AccessToken, signature, req)
}

// GetAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *tokenStorage) GetAccessTokenSession(_ context.Context, signature string, sess fosite.Session) (fosite.Requester, error) {
	r, _, err := s.load(kindAccess, signature, sess)
	if err != nil {
		return nil, err
	}
	if s.cutoffs.Revoked(r.Client.GetID(), r.RequestedAt) {
		return nil, fosite.ErrNotFound
	}
	return r, nil
}

// DeleteAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *tokenStorage) DeleteAccessTokenSession(_ context.Context, signature string) error {
	return s.delete(kindAccess, signature)
}

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *tokenStorage) CreateRefreshTokenSession(_ context.Context, signature string, req fosite.Requester) error {
	return s.create(kindRefresh, fosite.RefreshToken, signature, req)
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *tokenStorage) GetRefreshTokenSession(_ context.Context, signature string, sess fosite.Session) (fosite.Requester, error) {
	r, _, err := s.load(kindRefresh, signature, sess)
	if err != nil {
		return nil, err
	}
	if s.cutoffs.Revoked(r.Client.GetID(), r.RequestedAt) {
		return nil, fosite.ErrNotFound
	}
	return r, nil
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *tokenStorage) DeleteRefreshTokenSession(_ context.Context, signature string) error {
	return s.delete(kindRefresh, signature)
}

// RevokeRefreshToken implements oauth2.TokenRevocationStorage.
func (s *tokenStorage) RevokeRefreshToken(_ context.Context, requestID string) error {
	return s.revokeRequest(requestID, kindRefresh)
}

// RevokeRefreshTokenMaybeGracePeriod implements oauth2.TokenRevocationStorage (no grace period).
func (s *tokenStorage) RevokeRefreshTokenMaybeGracePeriod(ctx context.Context, requestID string, _ string) error {
	return s.RevokeRefreshToken(ctx, requestID)
}

// RevokeAccessToken implements oauth2.TokenRevocationStorage.
func (s *tokenStorage) RevokeAccessToken(_ context.Context, requestID string) error {
	return s.revokeRequest(requestID, kindAccess)
}
