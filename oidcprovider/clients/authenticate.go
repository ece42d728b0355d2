package clients

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-crypt/crypt/algorithm"
	"github.com/ory/fosite"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/clientaddr"
	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// unknownClientDigest is checked against the secret presented for an unknown client id or with
// the wrong method, at the cost of the digest Authelia documents (pbkdf2-sha512, 310000
// iterations), so neither answers faster than a wrong secret.
var unknownClientDigest = mustDigest("$pbkdf2-sha512$310000$c8p78n7pUMln0jzvd4aK4Q$JNRBzwAo0ek5qKn50cFzzvE9RXV88h1wJn5KGiHrD0YKtZaR/nCb2CJPOsKaPK0hjf.9yHxzQGZziziccp6Yng")

func mustDigest(s string) algorithm.Digest {
	d, _, err := DecodeSecret(s)
	if err != nil {
		panic(err)
	}
	return d
}

// Credentials are what a request offers to authenticate a client.
type Credentials struct {
	// Method is client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt or
	// none.
	Method string
	// ClientID is the presented client id (an assertion's sub).
	ClientID string
	// Secret is the presented secret ("" for none and the JWT methods).
	Secret string
	// Assertion is the client_assertion of the JWT methods (not yet verified).
	Assertion string
}

// ReadCredentials extracts the client's credentials, decoding Basic credentials as RFC 6749
// §2.3.1 requires (form-decoding of id and secret), or its JWT assertion (RFC 7523). Several
// methods at once are refused.
func ReadCredentials(r *http.Request, form url.Values) (Credentials, error) {
	id, secret, hasBasic := r.BasicAuth()
	if form.Get("client_assertion") != "" || form.Get("client_assertion_type") != "" {
		return readAssertion(form, hasBasic || r.Header.Get("Authorization") != "")
	}
	if hasBasic {
		if form.Get("client_secret") != "" {
			return Credentials{}, fosite.ErrInvalidRequest.WithHint("The client used more than one authentication method; use only one.")
		}
		cid, err1 := url.QueryUnescape(id)
		sec, err2 := url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return Credentials{}, fosite.ErrInvalidClient.WithHint("The client id or secret in the Basic credentials is not form-encoded as RFC 6749 section 2.3.1 requires.")
		}
		if fid := form.Get("client_id"); fid != "" && fid != cid {
			return Credentials{}, fosite.ErrInvalidRequest.WithHint("The client_id parameter does not match the Basic credentials.")
		}
		return Credentials{Method: AuthMethodBasic, ClientID: cid, Secret: sec}, nil
	}
	if h := r.Header.Get("Authorization"); h != "" && !strings.HasPrefix(strings.ToLower(h), "basic ") {
		return Credentials{}, fosite.ErrInvalidClient.WithHint("The Authorization header must use the Basic scheme to authenticate a client.")
	}
	cid := form.Get("client_id")
	if cid == "" {
		return Credentials{}, fosite.ErrInvalidClient.WithHint("Client authentication is required: send the client id and secret with HTTP Basic authentication.")
	}
	if sec := form.Get("client_secret"); sec != "" {
		return Credentials{Method: AuthMethodPost, ClientID: cid, Secret: sec}, nil
	}
	return Credentials{Method: AuthMethodNone, ClientID: cid}, nil
}

// Failure limits of client authentication. Failures are counted per (client id, address) and per
// address, never per client id alone, so a guesser cannot lock a client out of other addresses.
const (
	pairBurst       = 5
	pairInterval    = 12 * time.Second
	addressBurst    = 10
	addressInterval = 3 * time.Second
	limiterKeys     = 1 << 16
)

// Limits are the failure limits of client authentication: per (client id, address) and per
// address. They belong to the store the clients' tokens live in, so they survive config reloads.
type Limits struct {
	pair, address *Limiter
}

// NewLimits returns the limits: 5 failures per (client id, address), then one per 12 s; 10 per
// address, then one per 3 s.
func NewLimits() *Limits {
	return &Limits{
		pair:    NewLimiter(pairBurst, pairInterval, limiterKeys),
		address: NewLimiter(addressBurst, addressInterval, limiterKeys),
	}
}

// errThrottled answers an attempt refused by the limits; it names no client setting.
var errThrottled = fosite.ErrInvalidClient.WithHint("Too many failed client authentications from this address; try again later.")

// Authenticator authenticates clients at the token, introspection and revocation endpoints.
type Authenticator struct {
	// Lookup finds a registered client by id.
	Lookup func(id string) (*Client, bool)
	// Secrets remembers verified secrets.
	Secrets *digest.Cache
	// Limits counts failures.
	Limits *Limits
	// Logger receives one line per failure (never the secret).
	Logger *zap.Logger
	// OnFailure, when set, is told of each failure with a fixed reason: wrong_secret,
	// unknown_client, wrong_method, bad_assertion or throttled (for metrics).
	OnFailure func(reason string)
	// Audiences are the values a client assertion's aud may name (one of them): the issuer and
	// the URLs of the endpoints that authenticate clients.
	Audiences []string
	// Replay records the jti of each client assertion until it expires, across the nodes
	// sharing it (store.Claim); required for the JWT methods.
	Replay store.KV
	// Now is the clock assertions are checked against; nil is time.Now.
	Now func() time.Time
}

func (a *Authenticator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Authenticate checks the request's client credentials from clientIP (the address as the server's
// trusted proxies settle it). It enforces the client's token_endpoint_auth_method and checks the
// secret through the verified-secret cache. Every attempt that is not answered from that cache
// takes a token from the (client, address) and address limits before its digest check, which
// runs in one of the process's few digest slots, and gives the tokens back on success; once either
// limit is spent, every attempt from there is refused at once, a right secret included. An unknown
// client id, a known one with the wrong method and a wrong plaintext secret pay the same digest
// check as an unknown client and get the same answer, so neither timing nor message tells which
// clients exist or how they are set up.
func (a *Authenticator) Authenticate(ctx context.Context, r *http.Request, form url.Values, clientIP string) (*Client, error) {
	creds, err := ReadCredentials(r, form)
	if err != nil {
		if form.Get("client_assertion") != "" {
			// an assertion that cannot be read names no client it can be counted against:
			// it counts against the address
			if _, ok := a.Limits.address.Take(clientaddr.KeyOf(clientIP)); !ok {
				a.logFailure(form.Get("client_id"), clientIP, "throttled")
				return nil, errThrottled
			}
			a.logFailure(form.Get("client_id"), clientIP, "bad assertion: unreadable ("+rfcHint(err)+")")
		}
		return nil, err
	}
	c, known := a.Lookup(creds.ClientID)
	methodOK := known && creds.Method == c.AuthMethod()
	if methodOK && c.IsPublic() {
		return c, nil
	}
	addrKey := clientaddr.KeyOf(clientIP)
	pairKey := creds.ClientID + "\x00" + addrKey
	// A throttled address or (client, address) is refused everything, a right secret included:
	// otherwise the remembered-secret cache would answer a guesser at full speed, right or wrong.
	// Limits are per address, so a monitor elsewhere is not affected.
	if a.Limits.address.Throttled(addrKey) || a.Limits.pair.Throttled(pairKey) {
		a.logFailure(creds.ClientID, clientIP, "throttled")
		return nil, errThrottled
	}
	if creds.Assertion != "" {
		return a.authenticateAssertion(ctx, c, known, methodOK, creds, clientIP, addrKey, pairKey)
	}
	if methodOK && a.Secrets.Remembered(c.ID(), c.cfg.Secret, creds.Secret) {
		return c, nil
	}
	addr, ok := a.Limits.address.Take(addrKey)
	if !ok {
		a.logFailure(creds.ClientID, clientIP, "throttled")
		return nil, errThrottled
	}
	pair, ok := a.Limits.pair.Take(pairKey)
	if !ok {
		addr.GiveBack()
		a.logFailure(creds.ClientID, clientIP, "throttled")
		return nil, errThrottled
	}
	var match bool
	if methodOK {
		match, err = digest.Run(ctx, func() bool {
			m, _ := a.Secrets.Verify(c.ID(), c.cfg.Secret, creds.Secret, func() bool { return c.digest.Match(creds.Secret) })
			if !m && c.plaintext {
				// a plaintext secret is compared in microseconds: pay the unknown client's
				// digest on failure, so timing does not tell a client with a cheap secret
				// from an unknown one
				unknownClientDigest.Match(creds.Secret)
			}
			return m
		})
	} else {
		_, err = digest.Run(ctx, func() bool { return unknownClientDigest.Match(creds.Secret) })
	}
	if err != nil {
		addr.GiveBack()
		pair.GiveBack()
		return nil, fosite.ErrTemporarilyUnavailable.WithWrap(err)
	}
	if match {
		addr.GiveBack()
		pair.GiveBack()
		return c, nil
	}
	reason := "wrong secret"
	switch {
	case !known:
		reason = "unknown client"
	case !methodOK:
		reason = "wrong authentication method " + creds.Method
	}
	a.logFailure(creds.ClientID, clientIP, reason)
	return nil, fosite.ErrInvalidClient
}

// loggable is a presented client id fit for the log: a registered id as it is, anything else
// "(unknown)": callers write what they like there, a secret pasted into the wrong field included.
func (a *Authenticator) loggable(clientID string) string {
	if _, ok := a.Lookup(clientID); ok {
		return clientID
	}
	return "(unknown)"
}

func (a *Authenticator) logFailure(clientID, ip, reason string) {
	if a.OnFailure != nil {
		switch {
		case reason == "throttled":
			a.OnFailure("throttled")
		case reason == "unknown client":
			a.OnFailure("unknown_client")
		case strings.HasPrefix(reason, "wrong authentication method"):
			a.OnFailure("wrong_method")
		case strings.HasPrefix(reason, "bad assertion"):
			a.OnFailure("bad_assertion")
		default:
			a.OnFailure("wrong_secret")
		}
	}
	if a.Logger != nil {
		a.Logger.Info("client authentication failed", zap.String("client_id", a.loggable(clientID)), zap.String("remote_ip", ip), zap.String("reason", reason))
	}
}

// authenticateAssertion checks a client assertion. A signature check costs microseconds, not a
// digest's milliseconds: it runs at once, without a digest slot or a token taken beforehand (a
// busy client's concurrent requests would otherwise exhaust the limits), and each failure then
// takes a token from the address and (client, address) limits.
func (a *Authenticator) authenticateAssertion(ctx context.Context, c *Client, known, methodOK bool, creds Credentials, clientIP, addrKey, pairKey string) (*Client, error) {
	reason := "wrong authentication method " + creds.Method
	if !known {
		reason = "unknown client"
	}
	if methodOK {
		err := a.checkAssertion(ctx, c, creds.Assertion)
		if err == nil {
			return c, nil
		}
		if u := (*unavailableError)(nil); errors.As(err, &u) {
			return nil, fosite.ErrTemporarilyUnavailable.WithWrap(err)
		}
		reason = "bad assertion: " + err.Error()
	}
	a.Limits.address.Take(addrKey)
	a.Limits.pair.Take(pairKey)
	a.logFailure(creds.ClientID, clientIP, reason)
	return nil, fosite.ErrInvalidClient
}

// rfcHint is the hint of an OAuth error, for the log.
func rfcHint(err error) string {
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) {
		return rfc.HintField
	}
	return err.Error()
}
