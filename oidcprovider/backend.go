package oidcprovider

import (
	"context"
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// backend is what one storage directory holds for as long as any config uses it: the open
// database and the in-memory state that must outlive a config reload but never be shared with
// another store (the decoded-token cache, the verified-secret cache, the failure limits).
type backend struct {
	kv      *store.Badger
	opts    store.Options // the options the database was opened with
	tokens  *oauth.TokenCache
	secrets *digest.Cache
	limits  *clients.Limits
	cutoffs *oauth.ClientCutoffs
	// sessions caches decoded sign-in sessions for the gateway's cookie check.
	sessions *session.Cache
}

// Destruct closes the database when the last config using it lets go; it implements
// caddy.Destructor.
func (b *backend) Destruct() error { return b.kv.Destruct() }

// backends holds one backend per storage directory across config reloads: Caddy starts the new
// config before it stops the old one, and Badger locks its directory.
var backends = caddy.NewUsagePool()

// Sizes of the in-memory caches of a backend.
const (
	tokenCacheSize = 1 << 14
	// sessionCacheSize holds every live session of a large homelab or small company; beyond it
	// the gateway reads sessions from the store.
	sessionCacheSize = 1 << 17
	secretCacheSize  = 4096
	secretCacheTTL   = 60 * 60 * 1e9 // an hour after last use
)

// acquireBackend returns the backend of dir, opening it on first use. Every successful call must
// be paired with one releaseBackend(dir). Storage options apply when the database opens; a
// config that names other options for a directory already open gets the open one (changed
// options take effect at the next start).
func acquireBackend(ctx context.Context, dir string, opts store.Options) (*backend, bool, error) {
	v, loaded, err := backends.LoadOrNew(dir, func() (caddy.Destructor, error) {
		kv, err := store.Open(dir, opts, caddy.Log().Named("oidc.store"))
		if err != nil {
			return nil, err
		}
		cutoffs, err := oauth.LoadClientCutoffs(ctx, kv)
		if err != nil {
			return nil, errors.Join(err, kv.Destruct())
		}
		return &backend{
			cutoffs:  cutoffs,
			kv:       kv,
			opts:     opts,
			tokens:   oauth.NewTokenCache(tokenCacheSize),
			secrets:  digest.NewCache(secretCacheSize, secretCacheTTL),
			limits:   clients.NewLimits(),
			sessions: session.NewCache(sessionCacheSize),
		}, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*backend), loaded, nil
}

// releaseBackend gives back one reference taken by acquireBackend.
func releaseBackend(dir string) error {
	if _, err := backends.Delete(dir); err != nil {
		return fmt.Errorf("releasing store %s: %w", dir, err)
	}
	return nil
}
