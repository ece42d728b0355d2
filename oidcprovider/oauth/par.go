package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/ory/fosite"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// PathPAR is the pushed authorization request endpoint (RFC 9126), relative to the issuer.
const PathPAR = "/api/oidc/pushed-authorization-request"

// parLifetime is how long a pushed request waits for the browser (Authelia's five minutes).
const parLifetime = 5 * time.Minute

// ServePAR is the pushed authorization request endpoint: the client authenticates as at the
// token endpoint and pushes its authorization parameters; it gets a single-use request_uri to
// send the browser with.
func (p *Provider) ServePAR(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := parseForm(w, r); err != nil {
		p.writeError(w, r, err)
		return
	}
	if p.cfg.People == nil {
		p.writeError(w, r, fosite.ErrInvalidRequest.WithHint("This provider has no users_file: there is no one to authorize."))
		return
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			p.writeError(w, r, fosite.ErrInvalidRequest.WithHintf("The %s parameter is repeated.", k))
			return
		}
	}
	if r.PostForm.Get("request") != "" {
		// the request object's parameters replace the pushed ones (RFC 9101, RFC 9126 §3);
		// the client authenticates with what it sent beside it
		form, err := p.applyRequestObject(ctx, r.PostForm, presentedClientID(r), append([]string{"client_id"}, parCredentials...))
		if err != nil {
			p.writeError(w, r, err)
			return
		}
		r.PostForm, r.Form = form, form
	}
	if c, ok := p.cfg.Clients(presentedClientID(r)); ok {
		if ru := r.PostForm.Get("redirect_uri"); ru != "" && !slices.Contains(c.GetRedirectURIs(), ru) {
			p.writeError(w, r, fosite.ErrInvalidRequest.WithHint("The redirect_uri is not one the client registered."))
			return
		}
	}
	ar, err := p.oauth2.NewPushedAuthorizeRequest(ctx, r)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	resp, err := p.oauth2.NewPushedAuthorizeResponse(ctx, ar, &Session{})
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	p.oauth2.WritePushedAuthorizeResponse(ctx, w, ar, resp)
}

// parRecord is a pushed authorization request as kept until the browser brings its request_uri.
type parRecord struct {
	ID            string     `json:"id"`
	RequestedAt   time.Time  `json:"requested_at"`
	ClientID      string     `json:"client_id"`
	Form          url.Values `json:"form"`
	ResponseTypes []string   `json:"response_types"`
	RedirectURI   string     `json:"redirect_uri"`
	State         string     `json:"state"`
	ResponseMode  string     `json:"response_mode"`
	DefaultMode   string     `json:"default_response_mode"`
	Scopes        []string   `json:"scopes,omitempty"`
	Audience      []string   `json:"audience,omitempty"`
}

// parCredentials are form fields a pushed request carries for client authentication; they are
// never kept.
var parCredentials = []string{"client_secret", "client_assertion", "client_assertion_type"}

func parKey(requestURI string) []byte { return []byte("par/" + codeKey(requestURI)) }

// CreatePARSession implements fosite.PARStorage.
func (s *tokenStorage) CreatePARSession(ctx context.Context, requestURI string, ar fosite.AuthorizeRequester) error {
	form := url.Values{}
	for k, v := range ar.GetRequestForm() {
		if !slices.Contains(parCredentials, k) {
			form[k] = v
		}
	}
	rec := parRecord{
		ID: ar.GetID(), RequestedAt: ar.GetRequestedAt(), ClientID: ar.GetClient().GetID(), Form: form,
		ResponseTypes: ar.GetResponseTypes(), State: ar.GetState(),
		ResponseMode: string(ar.GetResponseMode()), DefaultMode: string(ar.GetDefaultResponseMode()),
		Scopes: ar.GetRequestedScopes(), Audience: ar.GetRequestedAudience(),
	}
	if u := ar.GetRedirectURI(); u != nil {
		rec.RedirectURI = u.String()
	}
	data, err := json.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("encoding a pushed request: %w", err)
	}
	return s.kv.Put(ctx, store.Entry{Key: parKey(requestURI), Value: data, TTL: parLifetime})
}

// GetPARSession implements fosite.PARStorage.
func (s *tokenStorage) GetPARSession(ctx context.Context, requestURI string) (fosite.AuthorizeRequester, error) {
	data, err := s.kv.Get(ctx, parKey(requestURI))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fosite.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	var rec parRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("decoding a pushed request: %w", err)
	}
	client, ok := s.clients(rec.ClientID)
	if !ok {
		return nil, fosite.ErrNotFound
	}
	ar := fosite.NewAuthorizeRequest()
	ar.ID, ar.RequestedAt, ar.Client, ar.Form = rec.ID, rec.RequestedAt, client, rec.Form
	ar.RequestedScope, ar.RequestedAudience = rec.Scopes, rec.Audience
	ar.Session = &Session{}
	ar.ResponseTypes, ar.State = rec.ResponseTypes, rec.State
	ar.ResponseMode, ar.DefaultResponseMode = fosite.ResponseModeType(rec.ResponseMode), fosite.ResponseModeType(rec.DefaultMode)
	if rec.RedirectURI != "" {
		if ar.RedirectURI, err = url.Parse(rec.RedirectURI); err != nil {
			return nil, fmt.Errorf("decoding a pushed request: %w", err)
		}
	}
	return ar, nil
}

// DeletePARSession implements fosite.PARStorage: a request_uri is good for one use.
func (s *tokenStorage) DeletePARSession(ctx context.Context, requestURI string) error {
	return s.kv.Delete(ctx, parKey(requestURI))
}

var _ fosite.PARStorage = (*tokenStorage)(nil)
