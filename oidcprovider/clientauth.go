package oidcprovider

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/ory/fosite"
	"go.uber.org/zap"
)

// unknownClientDigest is checked against the secret of an unknown client id, at the cost of the
// digest Authelia documents (pbkdf2-sha512, 310000 iterations).
var unknownClientDigest = mustDigest("$pbkdf2-sha512$310000$c8p78n7pUMln0jzvd4aK4Q$JNRBzwAo0ek5qKn50cFzzvE9RXV88h1wJn5KGiHrD0YKtZaR/nCb2CJPOsKaPK0hjf.9yHxzQGZziziccp6Yng")

func mustDigest(s string) interface{ Match(string) bool } {
	d, _, err := decodeSecret(s)
	if err != nil {
		panic(err)
	}
	return d
}

// presentedCredentials is what a request offers to authenticate a client.
type presentedCredentials struct {
	method   string // client_secret_basic, client_secret_post or none
	clientID string
	secret   string
}

// readClientCredentials extracts the client's credentials, decoding Basic credentials as RFC 6749
// §2.3.1 requires (form-decoding of id and secret). Several methods at once are refused.
func readClientCredentials(r *http.Request, form url.Values) (presentedCredentials, error) {
	if form.Get("client_assertion") != "" || form.Get("client_assertion_type") != "" {
		return presentedCredentials{}, fosite.ErrInvalidClient.WithHint("Client assertions (client_secret_jwt, private_key_jwt) are not supported yet.")
	}
	id, secret, hasBasic := r.BasicAuth()
	if hasBasic {
		if form.Get("client_secret") != "" {
			return presentedCredentials{}, fosite.ErrInvalidRequest.WithHint("The client used more than one authentication method; use only one.")
		}
		cid, err1 := url.QueryUnescape(id)
		sec, err2 := url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return presentedCredentials{}, fosite.ErrInvalidClient.WithHint("The client id or secret in the Basic credentials is not form-encoded as RFC 6749 section 2.3.1 requires.")
		}
		if fid := form.Get("client_id"); fid != "" && fid != cid {
			return presentedCredentials{}, fosite.ErrInvalidRequest.WithHint("The client_id parameter does not match the Basic credentials.")
		}
		return presentedCredentials{method: authMethodBasic, clientID: cid, secret: sec}, nil
	}
	if h := r.Header.Get("Authorization"); h != "" && !strings.HasPrefix(strings.ToLower(h), "basic ") {
		return presentedCredentials{}, fosite.ErrInvalidClient.WithHint("The Authorization header must use the Basic scheme to authenticate a client.")
	}
	cid := form.Get("client_id")
	if cid == "" {
		return presentedCredentials{}, fosite.ErrInvalidClient.WithHint("Client authentication is required: send the client id and secret with HTTP Basic authentication.")
	}
	if sec := form.Get("client_secret"); sec != "" {
		return presentedCredentials{method: authMethodPost, clientID: cid, secret: sec}, nil
	}
	return presentedCredentials{method: authMethodNone, clientID: cid}, nil
}

// clientIP is the client address as Caddy settled it (trusted_proxies), or the peer address.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// authenticateClient is fosite's ClientAuthenticationStrategy: it enforces the registered
// token_endpoint_auth_method, checks the secret through the verified-secret cache, and throttles
// failures per client id and per source address.
func (a *App) authenticateClient(_ context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	creds, err := readClientCredentials(r, form)
	if err != nil {
		return nil, err
	}
	ip := clientIP(r)
	c, ok := a.client(creds.clientID)
	if !ok {
		if t, _ := a.ipFailures.Throttled(ip); !t && creds.secret != "" {
			// cost an unknown id as much as a wrong secret, so timing does not list the clients
			unknownClientDigest.Match(creds.secret)
		}
		a.recordClientFailure("", ip, "unknown client")
		return nil, fosite.ErrInvalidClient
	}
	if creds.method != c.cfg.TokenEndpointAuthMethod {
		a.recordClientFailure(c.ID(), ip, "wrong method "+creds.method)
		return nil, fosite.ErrInvalidClient.WithHintf("The client is registered for token_endpoint_auth_method '%s' but the request used '%s'.", c.cfg.TokenEndpointAuthMethod, creds.method)
	}
	if c.cfg.Public {
		return c, nil
	}
	// A remembered secret is accepted even while the client id is being guessed at, so an
	// attacker cannot lock a working monitor out; everything else waits for the throttle.
	if verifiedSecrets.Lookup(c.ID(), c.cfg.Secret, creds.secret) {
		return c, nil
	}
	if t, _ := a.ipFailures.Throttled(ip); t {
		return nil, fosite.ErrInvalidClient.WithHint("Too many failed client authentications from this address; try again later.")
	}
	if t, _ := a.clientFailures.Throttled(c.ID()); t {
		return nil, fosite.ErrInvalidClient.WithHint("Too many failed authentications for this client; try again later.")
	}
	match, _ := verifiedSecrets.Verify(c.ID(), c.cfg.Secret, creds.secret, func() bool {
		return c.digest.Match(creds.secret)
	})
	if !match {
		a.recordClientFailure(c.ID(), ip, "wrong secret")
		return nil, fosite.ErrInvalidClient
	}
	return c, nil
}

func (a *App) recordClientFailure(clientID, ip, reason string) {
	if clientID != "" {
		a.clientFailures.Fail(clientID)
	}
	a.ipFailures.Fail(ip)
	a.logger.Info("client authentication failed", zap.String("client_id", clientID), zap.String("remote_ip", ip), zap.String("reason", reason))
}
