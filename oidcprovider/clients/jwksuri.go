package clients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Limits of fetching a client's jwks_uri.
const (
	// jwksFetchTimeout bounds one fetch, connection to last byte.
	jwksFetchTimeout = 5 * time.Second
	// jwksMaxBytes is the largest key set read; a larger answer is refused.
	jwksMaxBytes = 256 << 10
	// jwksCacheFor is how long fetched keys are used before they are fetched again.
	jwksCacheFor = 10 * time.Minute
	// jwksRefetchAfter is the least time between two fetches: a kid that is not in the cached
	// set (a client that rotated its keys) fetches the set again at most this often, and so does
	// a failed fetch, so nobody can make the provider hammer the URI.
	jwksRefetchAfter = time.Minute
	// jwksRetryFailedAfter is the least time between fetches while no set was ever fetched.
	jwksRetryFailedAfter = 10 * time.Second
)

// jwksHTTP fetches key sets: a timeout, and redirects only as followJWKSRedirect allows.
var jwksHTTP = &http.Client{Timeout: jwksFetchTimeout, CheckRedirect: followJWKSRedirect}

// followJWKSRedirect lets a key set's fetch follow at most 3 redirects, each to a URL a jwks_uri
// may have, never from https to http, and to a loopback host only from one.
func followJWKSRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("more than 3 redirects")
	}
	// an https key set may not send the provider to a loopback address (its own admin
	// API, say): only a jwks_uri that is itself on a loopback host may stay there
	if req.URL.Scheme != "https" && via[0].URL.Scheme == "https" {
		return errors.New("a redirect from https to http is not followed")
	}
	if IsLoopbackHost(req.URL.Hostname()) && !IsLoopbackHost(via[0].URL.Hostname()) {
		return errors.New("a redirect to a loopback host is not followed")
	}
	return checkJWKSURI(req.URL.String())
}

// remoteKeys is a client's jwks_uri and the key set last fetched from it. It is fetched when
// first needed, never at provisioning. Safe for concurrent use.
type remoteKeys struct {
	uri string
	now func() time.Time

	mu      sync.Mutex // held during a fetch: concurrent callers wait for its result
	set     []jose.JSONWebKey
	fetched time.Time // the last successful fetch
	tried   time.Time // the last attempt
	lastErr error
}

func newRemoteKeys(uri string) *remoteKeys {
	return &remoteKeys{uri: uri, now: time.Now}
}

// errKeysUnavailable is a jwks_uri that could not be fetched and no cached set to fall back on.
var errKeysUnavailable = errors.New("the client's jwks_uri could not be fetched")

// keys returns the cached set, fetching it when it is older than jwksCacheFor; with refresh
// (a kid or algorithm not in the set), it fetches it again unless it did so in the last
// jwksRefetchAfter. A failed fetch keeps the previous set.
func (r *remoteKeys) keys(ctx context.Context, refresh bool) ([]jose.JSONWebKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	have := !r.fetched.IsZero()
	wait := jwksRefetchAfter
	if !have {
		wait = jwksRetryFailedAfter
	}
	stale := !have || now.Sub(r.fetched) >= jwksCacheFor
	if (stale || refresh) && (r.tried.IsZero() || now.Sub(r.tried) >= wait) {
		r.tried = now
		set, err := fetchJWKS(ctx, r.uri)
		if err == nil {
			r.set, r.fetched, r.lastErr = set, now, nil
		} else {
			r.lastErr = err
		}
	}
	if r.fetched.IsZero() {
		if r.lastErr != nil {
			return nil, fmt.Errorf("%w: %w", errKeysUnavailable, r.lastErr)
		}
		return nil, errKeysUnavailable
	}
	return r.set, nil
}

// fetchJWKS fetches and parses a JWK Set: status 200, at most jwksMaxBytes, within
// jwksFetchTimeout; keys for encryption and keys that are not RSA or EC public keys are left
// out.
func fetchJWKS(ctx context.Context, uri string) ([]jose.JSONWebKey, error) {
	// the fetch is bounded by its own timeout, not by the request that needed it: waiting
	// callers share its result
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching jwks_uri: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := jwksHTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching jwks_uri: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching jwks_uri: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading jwks_uri: %w", err)
	}
	if len(body) > jwksMaxBytes {
		return nil, fmt.Errorf("reading jwks_uri: the key set is larger than %d KiB", jwksMaxBytes>>10)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("reading jwks_uri: not a JWK Set: %w", err)
	}
	keys := make([]jose.JSONWebKey, 0, len(set.Keys))
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !k.IsPublic() {
			k = k.Public() // a client that published its private key: use the public half only
		}
		if _, err := checkKeyType(k.Key); err != nil || !k.Valid() {
			continue
		}
		if k.Algorithm != "" {
			if err := fitsAlgorithm(k.Key, k.Algorithm); err != nil {
				continue
			}
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("reading jwks_uri: the set has no RSA or EC signature key")
	}
	return keys, nil
}
