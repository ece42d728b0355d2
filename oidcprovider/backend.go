package oidcprovider

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/caddyserver/caddy/v2"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// backend is what one store holds for as long as any config uses it: the open database and the
// in-memory state that must outlive a config reload but never be shared with another store (the
// decoded-token cache, the verified-secret cache, the failure limits).
type backend struct {
	kv     store.KV
	badger *store.Badger    // the embedded store, or nil
	pg     *postgres.Store  // the shared store, or nil
	opts   store.Options    // the options Badger was opened with
	pgCfg  *postgres.Config // the config PostgreSQL was opened with

	tokens  *oauth.TokenCache
	secrets *digest.Cache
	limits  *clients.Limits
	cutoffs *oauth.ClientCutoffs
	// revocations are the JWT access tokens ended early, for the gate.
	revocations *oauth.Revocations
	// sessions caches decoded sign-in sessions for the gateway's cookie check.
	sessions *session.Cache
}

// Destruct closes the database when the last config using it lets go; it implements
// caddy.Destructor.
func (b *backend) Destruct() error {
	if b.pg != nil {
		return b.pg.Destruct()
	}
	return b.badger.Destruct()
}

// backends holds one backend per store across config reloads: Caddy starts the new config
// before it stops the old one, Badger locks its directory, and a PostgreSQL pool and its
// listening connection are worth keeping.
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

// storeSpec says which store a config uses.
type storeSpec struct {
	// key identifies the store in backends: the Badger directory, or "postgres:" and the
	// database's identity (server, user, database, schema; never the password).
	key string
	// dir and opts are the Badger store's, when pg is nil.
	dir  string
	opts store.Options
	// pg is the PostgreSQL store's config, placeholders resolved.
	pg *postgres.Config
}

// trusted reports whether what this node holds in memory about the store is current: always
// for Badger; for PostgreSQL, while the store's change feed is up (store.Changes.Trusted), which
// it is not while the database cannot be reached. Answers that rest on memory alone (bans, a
// remembered password) are not given while it is false.
func (b *backend) trusted() bool { return b.pg == nil || b.pg.Trusted() }

// sameSettings reports whether b, opened for the same key, was opened with the spec's settings.
func (s storeSpec) sameSettings(b *backend) bool {
	if s.pg != nil {
		return b.pgCfg != nil && reflect.DeepEqual(s.pg.WithDefaults(), b.pgCfg.WithDefaults())
	}
	return b.opts == s.opts
}

// open opens the store the spec names.
func (s storeSpec) open(ctx context.Context) (*backend, error) {
	if s.pg != nil {
		pg, err := postgres.Open(ctx, *s.pg, caddy.Log().Named("oidc.store"))
		if err != nil {
			return nil, err
		}
		return &backend{kv: pg, pg: pg, pgCfg: s.pg}, nil
	}
	kv, err := store.Open(s.dir, s.opts, caddy.Log().Named("oidc.store"))
	if err != nil {
		return nil, err
	}
	return &backend{kv: kv, badger: kv, opts: s.opts}, nil
}

// acquireBackend returns the backend of the spec's store, opening it on first use. Every
// successful call must be paired with one releaseBackend(spec.key). Storage settings apply when
// the database opens; a config that names other settings for a store already open gets the open
// one (changed settings take effect at the next start).
func acquireBackend(ctx context.Context, spec storeSpec) (*backend, bool, error) {
	v, loaded, err := backends.LoadOrNew(spec.key, func() (caddy.Destructor, error) {
		b, err := spec.open(ctx)
		if err != nil {
			return nil, err
		}
		cutoffs, err := oauth.LoadClientCutoffs(ctx, b.kv)
		if err != nil {
			return nil, errors.Join(err, b.Destruct())
		}
		b.cutoffs = cutoffs
		if b.revocations, err = oauth.LoadRevocations(ctx, b.kv); err != nil {
			return nil, errors.Join(err, b.Destruct())
		}
		b.tokens = oauth.NewTokenCache(tokenCacheSize)
		b.secrets = digest.NewCache(secretCacheSize, secretCacheTTL)
		b.limits = clients.NewLimits()
		b.sessions = session.NewCache(sessionCacheSize)
		followChanges(b.kv, b.tokens, b.sessions, b.cutoffs, b.revocations) // a shared store's; ends with it
		return b, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*backend), loaded, nil
}

// releaseBackend gives back one reference taken by acquireBackend.
func releaseBackend(key string) error {
	if _, err := backends.Delete(key); err != nil {
		return fmt.Errorf("releasing store %s: %w", key, err)
	}
	return nil
}
