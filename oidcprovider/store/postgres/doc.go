// Package postgres is Portcullis's shared store: the store.KV and store.Changes interfaces on a
// PostgreSQL database (github.com/jackc/pgx/v5, pgxpool), so that several Caddy nodes with the same
// Caddyfile behave as one provider and one gateway. It does not import Caddy: the provider's app
// opens it from a Config and keeps it across reloads.
//
// # Tables
//
// Open creates Config.Schema when it is missing and applies the versioned migrations the
// database lacks (table portcullis_migrations), holding an advisory lock of the schema's, so
// nodes that start together migrate once. The records live in portcullis_kv(key bytea primary
// key, value bytea, expires_at timestamptz). Keys(prefix) is a range scan of the primary key
// (prefix ≤ key < the prefix's successor).
//
// # Expiry
//
// Every read skips rows whose expires_at has passed by the database's clock, so nodes whose
// clocks differ still agree. A sweeper deletes expired rows every minute, in batches, on one
// node at a time (pg_try_advisory_lock); it only reclaims space.
//
// # Writes
//
// Put, Delete and GetOrCreate's insert are each one statement, hence one transaction; PutSync
// is one transaction with synchronous_commit on, so it returns once the commit is flushed. Put
// commits as the server's synchronous_commit says (on by default). GetOrCreate inserts with ON
// CONFLICT and reads back, so nodes that race store one value and all return it.
//
// # The change feed
//
// A write sends its changed keys (every key of a Delete, the keys of a Put under a watched
// prefix) with pg_notify on the channel "portcullis.<schema>" inside its transaction, so they are
// delivered at commit, in commit order. Each node holds one listening connection outside the
// pool; it waits for notifications and, when idle for a quarter of a second, checks the
// connection with SELECT 1 (answer within 750 ms): a connection the server closes is noticed at
// once, a silent one (a lost route) within about a second. From the moment it is lost Trusted is false; the node
// listens again with backoff (50 ms doubling to 1 s), calls every Watch fn with a nil key, and
// only then trusts again. Measured on loopback (TestChangeDelay, under the race detector, on a
// loaded 2-core machine), a Delete on one node reaches another node's Watch in about 1 ms at the
// median and under 5 ms at the 99th percentile, counted from the call of Delete.
//
// A transaction that notifies holds PostgreSQL's notification lock from its commit until the
// commit is flushed, so such commits queue behind one another instead of being flushed in
// groups: with fsync on, a Put under a watched prefix costs several times a plain one under
// load. Watch only the prefixes whose records caches hold.
//
// # Faults
//
// Every statement runs under the caller's deadline capped by Config.Timeout and is cancelled on
// the server when it passes. An error that means the database cannot be reached or did not
// answer in time wraps store.ErrUnavailable; the caller's own cancellation or deadline is
// returned as ctx.Err(). A statement that fails on a connection the server dropped is tried
// once more on another (every statement of the store may run twice). Connect to the server
// itself or to a proxy in session mode: LISTEN and the prepared statements need a session of
// their own.
package postgres
