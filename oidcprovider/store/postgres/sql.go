package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// statements are the store's SQL with its schema written in.
type statements struct {
	get, put, del, keysRange, keysFrom, insertIfAbsent, create, sweep string
}

// live is the condition every read puts on a row: not expired by the database's clock, so that
// every node agrees.
const live = "(expires_at IS NULL OR expires_at > now())"

func newStatements(schema string) statements {
	kv := pgx.Identifier{schema, kvTable}.Sanitize()
	return statements{
		get: `SELECT value FROM ` + kv + ` WHERE key = $1 AND ` + live,
		// one statement, so one transaction: the upsert of every entry, and the notifications
		// of the change feed, delivered at commit
		put: `WITH w AS (
	INSERT INTO ` + kv + ` AS kv (key, value, expires_at)
	SELECT k, v, CASE WHEN t > 0 THEN now() + t * interval '1 microsecond' END
	FROM unnest($1::bytea[], $2::bytea[], $3::bigint[]) AS u(k, v, t)
	ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
)
SELECT pg_notify($4, p) FROM unnest($5::text[]) AS p`,
		del: `WITH d AS (DELETE FROM ` + kv + ` WHERE key = ANY($1::bytea[]))
SELECT pg_notify($2, p) FROM unnest($3::text[]) AS p`,
		// two statements rather than one with "$2 IS NULL OR", so that a generic plan keeps the
		// range condition on the primary key
		keysRange: `SELECT key FROM ` + kv + ` WHERE key >= $1 AND key < $2 AND ` + live + ` ORDER BY key`,
		keysFrom:  `SELECT key FROM ` + kv + ` WHERE key >= $1 AND ` + live + ` ORDER BY key`,
		// stores the value unless a live row holds the key (an expired one is replaced); the
		// first count is 1 when this call stored it
		insertIfAbsent: `WITH i AS (
	INSERT INTO ` + kv + ` AS kv (key, value) VALUES ($1, $2)
	ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = NULL
	WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now()
	RETURNING 1
), n AS (SELECT pg_notify($3, p) FROM i, unnest($4::text[]) AS p)
SELECT (SELECT count(*) FROM i), (SELECT count(*) FROM n)`,
		// stores the entry, with its TTL, unless a live row holds the key (an expired one is
		// replaced); the first count is 1 when this call stored it. Of racing calls for one
		// key exactly one stores: the others wait for its row and find it live.
		create: `WITH i AS (
	INSERT INTO ` + kv + ` AS kv (key, value, expires_at)
	VALUES ($1, $2, CASE WHEN $3::bigint > 0 THEN now() + $3::bigint * interval '1 microsecond' END)
	ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
	WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now()
	RETURNING 1
), n AS (SELECT pg_notify($4, p) FROM i, unnest($5::text[]) AS p)
SELECT (SELECT count(*) FROM i), (SELECT count(*) FROM n)`,
		sweep: `DELETE FROM ` + kv + ` WHERE key IN (
	SELECT key FROM ` + kv + ` WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED
) AND expires_at <= now()`,
	}
}

// migrations are the schema's versions: migrations[i] takes it to version i+1. Append only;
// never edit one that has been released.
var migrations = [][]string{
	{
		`CREATE TABLE {kv} (
	key        bytea PRIMARY KEY,
	value      bytea NOT NULL,
	expires_at timestamptz
)`,
		`CREATE INDEX {kv_expires_at} ON {kv} (expires_at) WHERE expires_at IS NOT NULL`,
	},
}

// migrate creates the schema when missing and applies the migrations the database lacks, holding
// an advisory lock of the schema's so that nodes starting together apply each one once.
func (s *Store) migrate(ctx context.Context) error {
	schema := s.cfg.Schema
	// migrations may take longer than one statement, and may wait for another node's
	ctx, cancel := context.WithTimeout(ctx, max(12*s.timeout, time.Minute))
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.wrap(ctx, "connect", err)
	}
	defer conn.Release()
	key := lockKey("migrate", schema)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return s.wrap(ctx, "migrate: taking the lock", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
			_ = conn.Conn().Close(uctx) // the lock goes with the session
		}
	}()
	sch := pgx.Identifier{schema}.Sanitize()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return s.wrap(ctx, "migrate", err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+sch); err != nil {
			return s.wrap(ctx, "migrate: creating schema "+schema, err)
		}
	}
	mt := pgx.Identifier{schema, migrationsTable}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+mt+" (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return s.wrap(ctx, "migrate", err)
	}
	var version int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+mt).Scan(&version); err != nil {
		return s.wrap(ctx, "migrate", err)
	}
	if version > len(migrations) {
		// a newer Portcullis migrated it (a rolling upgrade): migrations only add, so go on
		s.logger.Warn("the database schema is newer than this version of Portcullis knows",
			zap.String("schema", schema), zap.Int("version", version), zap.Int("known", len(migrations)))
	}
	repl := func(q string) string {
		return strings.NewReplacer(
			"{kv}", pgx.Identifier{schema, kvTable}.Sanitize(),
			"{kv_expires_at}", pgx.Identifier{kvTable + "_expires_at"}.Sanitize(),
		).Replace(q)
	}
	for v := version; v < len(migrations); v++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for _, q := range migrations[v] {
				if _, err := tx.Exec(ctx, repl(q)); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+mt+" (version) VALUES ($1)", v+1)
			return err
		})
		if err != nil {
			return s.wrap(ctx, fmt.Sprintf("migrate: to version %d", v+1), err)
		}
		s.logger.Info("migrated the database schema", zap.String("schema", schema), zap.Int("version", v+1))
	}
	return nil
}
