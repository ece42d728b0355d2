package oauth

import (
	"context"
	"errors"

	"github.com/ory/fosite"
)

// grantTable is the token endpoint's one fosite handler: it holds, by grant type, the handlers
// that serve that grant, for the request (HandleTokenEndpointRequest) and the response
// (PopulateTokenEndpointResponse) apart, and runs only those.
//
// fosite asks every handler of its list: NewAccessResponse calls PopulateTokenEndpointResponse on
// each whatever the grant, and each that does not serve it answers ErrUnknownRequest wrapped with
// a stack trace. With the code flow's handlers beside client_credentials, those traces took 14%
// of the CPU of a client_credentials token, plus their garbage. Handlers that would answer "not
// mine" for a grant are left out of its lists instead:
//   - a grant's lists hold only the handlers whose CanHandleTokenEndpointRequest is true for it;
//   - the request list of authorization_code leaves out OpenIDConnectExplicitHandler, whose
//     HandleTokenEndpointRequest does nothing but answer ErrUnknownRequest (fosite v0.47.0);
//   - the response lists leave out refreshedUser (it only checks the request) and the PKCE
//     handler (its PopulateTokenEndpointResponse does nothing);
//   - the OpenID Connect handlers run only when the request was granted "openid", the first
//     thing they check (the code flow stores its OpenID Connect request only then).
//
// TestTokenHandlersServeOnlyTheirGrant and TestGrantTableListsHandlersOfTheirGrant hold a fosite
// upgrade to this.
type grantTable struct {
	grants map[string]grantLists
}

// grantLists are the handlers of one grant type, in fosite's order.
type grantLists struct {
	request, response []grantHandler
}

// grantHandler is one handler of a grant; with openID it serves only a request granted the
// "openid" scope.
type grantHandler struct {
	fosite.TokenEndpointHandler
	openID bool
}

var _ fosite.TokenEndpointHandler = (*grantTable)(nil)

// lists are the handlers of r's grant type: fosite's handlers serve exactly one grant type per
// request.
func (g *grantTable) lists(r fosite.AccessRequester) (grantLists, bool) {
	gt := r.GetGrantTypes()
	if len(gt) != 1 {
		return grantLists{}, false
	}
	l, ok := g.grants[gt[0]]
	return l, ok
}

// CanHandleTokenEndpointRequest implements fosite.TokenEndpointHandler.
func (g *grantTable) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	_, ok := g.lists(r)
	return ok
}

// CanSkipClientAuth implements fosite.TokenEndpointHandler: no handler of the table skips client
// authentication (a public client authenticates with the "none" method).
func (g *grantTable) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

// HandleTokenEndpointRequest implements fosite.TokenEndpointHandler as fosite's own loop does:
// each handler of the grant checks the request in turn; the first error other than
// ErrUnknownRequest ends it; when none accepted the request, it is not handled.
func (g *grantTable) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	l, _ := g.lists(r)
	found := false
	for _, h := range l.request {
		if h.openID && !r.GetGrantedScopes().Has("openid") {
			continue
		}
		if err := h.HandleTokenEndpointRequest(ctx, r); err == nil {
			found = true
		} else if !errors.Is(err, fosite.ErrUnknownRequest) {
			return err
		}
	}
	if !found {
		return fosite.ErrUnknownRequest // fosite answers invalid_request, as when no handler took it
	}
	return nil
}

// PopulateTokenEndpointResponse implements fosite.TokenEndpointHandler as fosite's own loop
// does: each handler of the grant adds its part of the response; the first error other than
// ErrUnknownRequest ends it.
func (g *grantTable) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	l, _ := g.lists(r)
	for _, h := range l.response {
		if h.openID && !r.GetGrantedScopes().Has("openid") {
			continue
		}
		if err := h.PopulateTokenEndpointResponse(ctx, r, resp); err != nil && !errors.Is(err, fosite.ErrUnknownRequest) {
			return err
		}
	}
	return nil
}
