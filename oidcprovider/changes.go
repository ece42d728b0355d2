package oidcprovider

import (
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// What each in-memory state in front of the store needs on a store several nodes share
// (store.Changes), so that no node accepts what another has ended:
//
//   - the decoded access tokens (oauth.TokenCache) follow "tok-end/at/": a revocation, a
//     sign-out that ends the tokens of its session, `caddy oidc tokens revoke`, the family of a
//     reused refresh token all delete the token's record and, on a shared store, its end key
//     beside it, whose deletion drops the token on every node;
//   - the decoded sessions (session.Cache) follow "sess-end/": a sign-out, `sessions end`, a
//     step-up that moves the session to a new id, inactivity all delete the session's record and
//     its end key; an activity write (once a minute) need not reach the other nodes;
//   - the clients' revocation cut-offs (oauth.ClientCutoffs) follow "client-cutoff/": a cut-off
//     set on any node is read back into memory, and read from the store until it is;
//   - the JWT access tokens ended early (oauth.Revocations) follow "at-revoked/": an entry written
//     by any node (a revoked token's jti, a signed-out session's sid, whose keys hold all they
//     say) is installed from its key, and all are read back after a gap in the feed;
//   - the bans (regulation.Regulator, one per running config) follow "ban/" themselves, and the
//     failures that decide them are counted in the store ("fail/"), not in memory.
//
// While a node does not receive the changes (store.Changes.Trusted is false), none of them
// answers from memory: each reads the store, so a node cut off from the change feed fails closed
// to the database. What needs no following: the verified-secret cache (digest.Cache) remembers
// checks of secrets and passwords from each node's own config (clients, users file), which no
// other node can change, and a ban or a disabled user is checked before it is consulted; the
// users' and callers' identity caches hold values derived from the users file or from an
// accepted token, never a decision of the store; the subjects Subjects remembers never change
// once made; the client-authentication throttle's buckets are per node by design.
//
// The store sends a change for every deleted key, and for a written key only under a watched
// prefix, and a notifying commit costs several times a plain one on PostgreSQL (measured with
// fsync on: 4.0 ms against 0.95 ms a Put, 16 writers on 2 cores). So the caches of tokens and
// sessions watch end keys, which are never written, rather than the records' prefixes ("tok/at/",
// "sess/"): watching those would make every token issued, every sign-in and every activity write
// a notifying commit. The watched prefixes written to are "client-cutoff/", "at-revoked/" and
// "ban/", all rare.

// followChanges makes the caches of a backend follow its store's change feed when the store is
// shared by several nodes (kv implements store.Changes), and returns the function that stops
// them. On a store only one process opens (Badger) it does nothing: there, the code that ends a
// record drops it from the caches itself. A backend need not call stop: its store's Destruct ends
// the feed (no more calls, never Trusted again), and the followers' reads of the closed store
// end them.
func followChanges(kv store.KV, tokens *oauth.TokenCache, sessions *session.Cache, cutoffs *oauth.ClientCutoffs, revocations *oauth.Revocations) (stop func()) {
	ch, ok := kv.(store.Changes)
	if !ok {
		return func() {}
	}
	stops := []func(){
		tokens.Follow(ch),
		sessions.Follow(ch),
		cutoffs.Follow(kv, ch),
		revocations.Follow(kv, ch),
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}
