package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"
	"go.uber.org/zap"
)

// Request objects (RFC 9101, OpenID Connect Core §6.1): an authorization request sent as a JWT
// in the "request" parameter, signed with one of the client's keys. They are verified here,
// before fosite sees the request, and replaced by their parameters: fosite v0.47's own parser
// merges claims with fmt's %s (a number or the claims object comes out garbled), skips a
// request object whose query lacks the openid scope (using the unsigned query instead), and
// accepts alg none unless the client pinned an algorithm. Since *clients.Client does not
// implement fosite.OpenIDConnectClient, any "request" that reached fosite would be refused
// (request_not_supported).

// requestObjectSkew is how far a request object's exp may be in the past and its nbf in the
// future.
const requestObjectSkew = 60 * time.Second

// requestObjectClaimsDropped are the JWT claims of a request object that are not authorization
// parameters.
var requestObjectClaimsDropped = []string{"iss", "aud", "exp", "nbf", "iat", "jti"}

// applyRequestObject returns the authorization parameters of form: when it carries a request
// object, that object's parameters alone (RFC 9101 §5: the query's parameters are not used,
// even those the object lacks), with client_id, and the parameters named in keep (a pushed
// request's client authentication) from form. The object must verify with a key of clientID's
// registration and its request_object_signing_alg; iss and client_id, when present, must be
// the client's, aud, when present, must name the issuer, and exp and nbf, when present, must
// hold. A request_uri other than a pushed request's is refused (request_uri_not_supported).
func (p *Provider) applyRequestObject(ctx context.Context, form url.Values, clientID string, keep []string) (url.Values, error) {
	uri, raw := form.Get("request_uri"), form.Get("request")
	if uri != "" && !strings.HasPrefix(uri, parPrefix) {
		return nil, fosite.ErrRequestURINotSupported.WithHint("Request objects by reference (request_uri) are not offered: send the request object by value in the 'request' parameter, or push the request (pushed authorization requests).")
	}
	if raw == "" {
		return form, nil
	}
	if uri != "" {
		return nil, fosite.ErrInvalidRequest.WithHint("The parameters 'request' and 'request_uri' were both given; use one.")
	}
	client, ok := p.cfg.Clients(clientID)
	if !ok {
		return nil, fosite.ErrInvalidClient.WithHint("The request object's client is not registered, or the request names no client_id.")
	}
	refuse := func(reason string) error {
		p.cfg.Logger.Info("request object refused", zap.String("client_id", client.ID()), zap.String("reason", reason))
		return fosite.ErrInvalidRequestObject.WithHint("The request object is not valid: " + reason + ".")
	}
	payload, err := client.VerifyRequestObject(ctx, raw)
	if err != nil {
		p.cfg.Logger.Info("request object refused", zap.String("client_id", client.ID()), zap.Error(err))
		return nil, fosite.ErrInvalidRequestObject.WithHint("The request object's signature does not verify with the client's registered keys and request_object_signing_alg (unsigned request objects are refused).")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, refuse("its payload is not a JSON object")
	}
	now := time.Now()
	if v, ok := claims["client_id"]; ok && v != client.ID() {
		return nil, refuse("its client_id is not the request's")
	}
	if v, ok := claims["iss"]; ok && v != client.ID() {
		return nil, refuse("its iss is not the client id")
	}
	if v, ok := claims["aud"]; ok && !audienceNames(v, p.requestObjectAudiences()) {
		return nil, refuse("its aud does not name this provider's issuer")
	}
	if exp, ok := numericClaim(claims, "exp"); ok && now.After(exp.Add(requestObjectSkew)) {
		return nil, refuse("it has expired")
	} else if _, present := claims["exp"]; present && !ok {
		return nil, refuse("its exp is not a number")
	}
	if nbf, ok := numericClaim(claims, "nbf"); ok && nbf.After(now.Add(requestObjectSkew)) {
		return nil, refuse("its nbf is in the future")
	}
	if _, ok := claims["request"]; ok {
		return nil, refuse("it holds another request parameter")
	}
	if _, ok := claims["request_uri"]; ok {
		return nil, refuse("it holds a request_uri")
	}
	out := url.Values{}
	for k, v := range claims {
		if slices.Contains(requestObjectClaimsDropped, k) || v == nil {
			continue
		}
		s, ok := parameterValue(v)
		if !ok {
			return nil, refuse("its " + k + " cannot be read as a parameter")
		}
		out.Set(k, s)
	}
	out.Set("client_id", client.ID())
	for _, k := range keep {
		if v, ok := form[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}

// requestObjectAudiences are the values a request object's aud may name: the issuer (RFC 9101
// §4), or the authorization or pushed-request endpoint it was sent to.
func (p *Provider) requestObjectAudiences() []string {
	iss := p.cfg.Issuer
	return []string{iss, iss + "/", iss + PathAuthorization, iss + PathAuthorizationAlias, iss + PathPAR}
}

// audienceNames reports whether aud (a string or a list of strings) names one of want.
func audienceNames(aud any, want []string) bool {
	switch a := aud.(type) {
	case string:
		return slices.Contains(want, a)
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok && slices.Contains(want, s) {
				return true
			}
		}
	}
	return false
}

// numericClaim reads a NumericDate claim.
func numericClaim(claims map[string]any, name string) (time.Time, bool) {
	n, ok := claims[name].(json.Number)
	if !ok {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// parameterValue is a request object's claim as an authorization parameter: strings as they
// are, numbers and booleans as written, objects and lists (the claims parameter) as JSON.
func parameterValue(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return strconv.FormatBool(v), true
	case map[string]any, []any:
		b, err := json.Marshal(v)
		return string(b), err == nil
	}
	return "", false
}
