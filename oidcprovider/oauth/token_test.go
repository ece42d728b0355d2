package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/ory/fosite"
	oauth2h "github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"golang.org/x/oauth2"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

// handlerSpy wraps a token endpoint handler fosite asks and notes each answer of
// ErrUnknownRequest ("not mine"): an answer fosite builds with a stack trace, which a request
// pays for every handler asked that does not serve its grant.
type handlerSpy struct {
	fosite.TokenEndpointHandler
	name string
	mu   *sync.Mutex
	seen *[]string
}

func (s *handlerSpy) note(phase string, err error) error {
	if errors.Is(err, fosite.ErrUnknownRequest) {
		s.mu.Lock()
		*s.seen = append(*s.seen, s.name+"."+phase)
		s.mu.Unlock()
	}
	return err
}

func (s *handlerSpy) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	return s.note("HandleTokenEndpointRequest", s.TokenEndpointHandler.HandleTokenEndpointRequest(ctx, r))
}

func (s *handlerSpy) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, w fosite.AccessResponder) error {
	return s.note("PopulateTokenEndpointResponse", s.TokenEndpointHandler.PopulateTokenEndpointResponse(ctx, r, w))
}

// spyOnTokenHandlers wraps every handler the token endpoint asks, fosite's list and the lists of
// the grant table under it, and returns what they answered "not mine" since.
func spyOnTokenHandlers(p *Provider) (seen func() []string) {
	var mu sync.Mutex
	var notes []string
	spy := func(h fosite.TokenEndpointHandler) fosite.TokenEndpointHandler {
		return &handlerSpy{TokenEndpointHandler: h, name: fmt.Sprintf("%T", h), mu: &mu, seen: &notes}
	}
	fc := p.oauth2.(*fosite.Fosite).Config.(*fosite.Config)
	for _, h := range fc.TokenEndpointHandlers {
		if g, ok := h.(*grantTable); ok {
			for _, lists := range g.grants {
				for _, list := range [][]grantHandler{lists.request, lists.response} {
					for i := range list {
						list[i].TokenEndpointHandler = spy(list[i].TokenEndpointHandler)
					}
				}
			}
		}
	}
	for i, h := range fc.TokenEndpointHandlers {
		fc.TokenEndpointHandlers[i] = spy(h)
	}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := notes
		notes = nil
		return out
	}
}

// Every grant the token endpoint serves asks only the handlers that serve it: none answers "not
// mine", an answer fosite's handlers build with a stack trace (14% of the CPU of a
// client_credentials token when all of them were asked).
func TestTokenHandlersServeOnlyTheirGrant(t *testing.T) {
	f := newFlowProvider(t)
	seen := spyOnTokenHandlers(f.p)
	check := func(what string, status int, out map[string]any) {
		t.Helper()
		if status != http.StatusOK {
			t.Fatalf("%s: %d %v", what, status, out)
		}
		if s := seen(); len(s) > 0 {
			t.Errorf("%s asked handlers that do not serve it: %v", what, s)
		}
	}
	status, out := f.token("monitor", url.Values{"grant_type": {clients.GrantClientCredentials}, "scope": {clients.ScopeBearerAuthz}})
	check("client_credentials", status, out)

	verifier := oauth2.GenerateVerifier()
	code := f.authorize("app", url.Values{"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}})
	status, out = f.exchange("app", code, verifier)
	check("code exchange with openid and PKCE", status, out)
	if out["id_token"] == nil || out["refresh_token"] == nil {
		t.Fatalf("code exchange: no ID token or refresh token: %v", out)
	}
	status, out = f.refresh("app", out["refresh_token"].(string))
	check("refresh with openid", status, out)
	if out["id_token"] == nil {
		t.Fatalf("refresh with openid: no ID token: %v", out)
	}

	code = f.authorize("app", url.Values{"scope": {"offline_access profile"}})
	status, out = f.exchange("app", code, "")
	check("code exchange without openid", status, out)
	if out["id_token"] != nil {
		t.Fatalf("code exchange without openid: an ID token: %v", out)
	}
	status, out = f.refresh("app", out["refresh_token"].(string))
	check("refresh without openid", status, out)
	if out["id_token"] != nil {
		t.Fatalf("refresh without openid: an ID token: %v", out)
	}
}

// The token endpoint's refusals: each grant's own error code, as before the grant table.
func TestTokenRefusals(t *testing.T) {
	f := newFlowProvider(t)
	_, out := f.exchange("app", f.authorize("app", nil), "")
	refresh := out["refresh_token"].(string)
	verifier := oauth2.GenerateVerifier()
	pkceCode := f.authorize("app", url.Values{"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}})
	for _, c := range []struct {
		name, client string
		form         url.Values
		status       int
		code         string
	}{
		{"no grant type", "monitor", url.Values{"scope": {clients.ScopeBearerAuthz}}, 400, "invalid_request"},
		{"unknown grant type", "monitor", url.Values{"grant_type": {"password"}}, 400, "unsupported_grant_type"},
		{"two grant types", "monitor", url.Values{"grant_type": {"client_credentials refresh_token"}}, 400, "unsupported_grant_type"},
		{"client_credentials, scope not allowed", "monitor", url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}}, 400, "invalid_scope"},
		{"client_credentials, audience not allowed", "monitor", url.Values{"grant_type": {"client_credentials"}, "audience": {"https://other.example.com/"}}, 400, "invalid_target"},
		{"client_credentials by a client without the grant", "app", url.Values{"grant_type": {"client_credentials"}}, 400, "unauthorized_client"},
		{"code by a client without the grant", "monitor", url.Values{"grant_type": {"authorization_code"}, "code": {"portcullis_ac_x.y"}, "redirect_uri": {testRedirect}}, 400, "unauthorized_client"},
		{"unknown code", "app", url.Values{"grant_type": {"authorization_code"}, "code": {"portcullis_ac_x.y"}, "redirect_uri": {testRedirect}}, 400, "invalid_grant"},
		{"code without its PKCE verifier", "app", url.Values{"grant_type": {"authorization_code"}, "code": {pkceCode}, "redirect_uri": {testRedirect}}, 400, "invalid_grant"},
		{"refresh token of another client", "other", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, 400, "invalid_grant"},
		{"unknown refresh token", "app", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"portcullis_rt_x.y"}}, 400, "invalid_grant"},
		{"refresh by a client without the grant", "monitor", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, 400, "unauthorized_client"},
	} {
		status, out := f.token(c.client, c.form)
		if status != c.status || out["error"] != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.name, status, out, c.status, c.code)
		}
	}
}

// BenchmarkClientCredentials is the token endpoint's client_credentials grant on a real provider
// and a real Badger store, the client's secret remembered after the first request.
func BenchmarkClientCredentials(b *testing.B) {
	f := newFlowProvider(b)
	form := url.Values{"grant_type": {clients.GrantClientCredentials}, "scope": {clients.ScopeBearerAuthz}}
	b.ReportAllocs()
	for b.Loop() {
		if status, out := f.token("monitor", form); status != http.StatusOK {
			b.Fatal(status, out)
		}
	}
}

// Each handler of the grant table serves the grant it is listed under, by fosite's own test.
func TestGrantTableListsHandlersOfTheirGrant(t *testing.T) {
	f := newFlowProvider(t)
	fc := f.p.oauth2.(*fosite.Fosite).Config.(*fosite.Config)
	if len(fc.TokenEndpointHandlers) != 1 {
		t.Fatalf("fosite asks %d token endpoint handlers, want the grant table alone", len(fc.TokenEndpointHandlers))
	}
	g := fc.TokenEndpointHandlers[0].(*grantTable)
	for grant, lists := range g.grants {
		r := fosite.NewAccessRequest(&Session{})
		r.GrantTypes = fosite.Arguments{grant}
		for _, h := range append(append([]grantHandler{}, lists.request...), lists.response...) {
			if !h.CanHandleTokenEndpointRequest(context.Background(), r) {
				t.Errorf("%T is listed under %s and does not handle it", h.TokenEndpointHandler, grant)
			}
		}
		if grant == grantAuthorizationCode {
			// left out of the request list: in fosite v0.47.0 it only answers "not mine" there
			// (an upgrade that gives it work fails here, or panics on its empty fields)
			var oidc openid.OpenIDConnectExplicitHandler
			if err := oidc.HandleTokenEndpointRequest(context.Background(), r); !errors.Is(err, fosite.ErrUnknownRequest) {
				t.Errorf("fosite's OpenID Connect code handler checks token requests now (%v): list it under %s", err, grant)
			}
		}
		r.GrantTypes = fosite.Arguments{grant, grant}
		if g.CanHandleTokenEndpointRequest(context.Background(), r) {
			t.Errorf("the table handles a request of two grant types %v", r.GrantTypes)
		}
	}
}

// strategySpy notes which kinds of token fosite's introspection looks up.
type strategySpy struct {
	oauth2h.CoreStrategy
	looked *[]string
}

func (s strategySpy) AccessTokenSignature(ctx context.Context, token string) string {
	*s.looked = append(*s.looked, "access")
	return s.CoreStrategy.AccessTokenSignature(ctx, token)
}

func (s strategySpy) RefreshTokenSignature(ctx context.Context, token string) string {
	*s.looked = append(*s.looked, "refresh")
	return s.CoreStrategy.RefreshTokenSignature(ctx, token)
}

// Introspection and userinfo look a token up as the kind its prefix names, whatever the hint:
// fosite's validator builds a stack-traced error for each miss of the other kind.
func TestIntrospectionLooksUpTheTokensKind(t *testing.T) {
	f := newFlowProvider(t)
	_, out := f.exchange("app", f.authorize("app", nil), "")
	at, rt := out["access_token"].(string), out["refresh_token"].(string)
	var looked []string
	fc := f.p.oauth2.(*fosite.Fosite).Config.(*fosite.Config)
	var core *oauth2h.CoreValidator
	switch v := fc.TokenIntrospectionHandlers[0].(type) {
	case *oauth2h.CoreValidator:
		core = v
	case *kindIntrospector:
		core = v.core
	}
	core.CoreStrategy = strategySpy{CoreStrategy: core.CoreStrategy, looked: &looked}
	for _, c := range []struct {
		token, hint, want string
	}{
		{at, "", "access"}, {at, "refresh_token", "access"}, {rt, "", "refresh"}, {rt, "access_token", "refresh"},
	} {
		looked = nil
		form := url.Values{"token": {c.token}}
		if c.hint != "" {
			form.Set("token_type_hint", c.hint)
		}
		if _, res := f.post(f.p.ServeIntrospection, PathIntrospection, "app", form); res["active"] != true {
			t.Fatalf("introspection of a live %s token: %v", c.want, res)
		}
		if len(looked) != 1 || looked[0] != c.want {
			t.Errorf("introspection of the %s token with hint %q looked up %v", c.want, c.hint, looked)
		}
	}
	looked = nil
	if got := f.userinfo(at); got != http.StatusOK || len(looked) != 1 || looked[0] != "access" {
		t.Errorf("userinfo: %d, looked up %v", got, looked)
	}
	looked = nil
	if got := f.userinfo(rt); got != http.StatusUnauthorized || len(looked) != 1 || looked[0] != "refresh" {
		t.Errorf("userinfo with a refresh token: %d, looked up %v", got, looked)
	}
}
