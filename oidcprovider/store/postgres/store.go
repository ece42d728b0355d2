package postgres

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"go.uber.org/zap"
)

// The store's tables, in Config.Schema. The names carry the product's prefix so that they sit
// beside other applications' tables when the schema is public.
const (
	kvTable         = "portcullis_kv"
	migrationsTable = "portcullis_migrations"
)

// sweepEvery is how often a node looks for expired rows to delete (one node at a time does it).
const sweepEvery = time.Minute

// cancelGrace is how long a statement past its deadline may take to end after its cancel request
// before its connection is closed.
const cancelGrace = 500 * time.Millisecond

// sweepBatch is how many expired rows one statement of the sweeper deletes.
const sweepBatch = 1000

// Store is the shared store on PostgreSQL: store.KV and store.Changes. It is safe for concurrent
// use; one Store per process and database+schema is enough (share it, e.g. in a caddy.UsagePool
// keyed by Config.Identity).
type Store struct {
	cfg     Config
	pool    *pgxpool.Pool
	logger  *zap.Logger
	timeout time.Duration
	sql     statements
	metrics *metrics

	initMu sync.Mutex // serialises GetOrCreate in this process, as Badger's does

	// ops counts the operations running now, plus closedBit once Destruct has begun (see
	// store.Badger: the same scheme).
	ops       atomic.Int64
	drained   chan struct{}
	drainOnce sync.Once

	bg     context.Context // the background goroutines' context, cancelled by Destruct
	cancel context.CancelFunc
	wg     sync.WaitGroup

	feed feed // the change feed (changes.go)

	sweepEvery time.Duration
}

var (
	_ store.KV      = (*Store)(nil)
	_ store.Changes = (*Store)(nil)
)

// closedBit marks Store.ops once Destruct has begun; the bits below it count running operations.
const closedBit = 1 << 62

func (s *Store) enter() error {
	if s.ops.Add(1)&closedBit != 0 {
		s.leave()
		return store.ErrClosed
	}
	return nil
}

func (s *Store) leave() {
	if s.ops.Add(-1) == closedBit {
		s.drainOnce.Do(func() { close(s.drained) })
	}
}

// options are Open's knobs for tests.
type options struct {
	sweepEvery time.Duration
}

// Open connects to the database c designates, creates the schema and applies the migrations it
// lacks (under an advisory lock, so nodes starting together are safe), starts the listening
// connection of the change feed and the sweeper of expired rows. Destruct stops them. An error
// that means the database cannot be reached wraps store.ErrUnavailable.
func Open(ctx context.Context, c Config, logger *zap.Logger) (*Store, error) {
	return open(ctx, c, logger, options{})
}

func open(ctx context.Context, c Config, logger *zap.Logger, o options) (*Store, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.WithDefaults()
	pc, err := c.poolConfig()
	if err != nil {
		return nil, err
	}
	s := &Store{
		cfg:        c,
		logger:     logger,
		timeout:    time.Duration(c.Timeout),
		sql:        newStatements(c.Schema),
		metrics:    newMetrics(),
		drained:    make(chan struct{}),
		sweepEvery: sweepEvery,
	}
	if o.sweepEvery > 0 {
		s.sweepEvery = o.sweepEvery
	}
	s.feed.init(s, pc.ConnConfig, channelName(c.Schema))
	s.bg, s.cancel = context.WithCancel(context.Background())
	s.pool, err = pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("storage postgres: %w", err)
	}
	fail := func(err error) (*Store, error) {
		s.cancel()
		s.pool.Close()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		return fail(err)
	}
	// the first LISTEN is made here, so that the store is Trusted when Open returns
	lctx, cancel := context.WithTimeout(ctx, s.timeout)
	conn, err := s.feed.listen(lctx)
	cancel()
	if err != nil {
		return fail(s.wrap(ctx, "listen", err))
	}
	s.feed.setTrusted(true)
	s.wg.Add(2)
	go s.feed.run(s.bg, conn)
	go s.sweepLoop()
	return s, nil
}

// poolConfig is the pgxpool configuration of a validated, defaulted config; it reads the TLS
// files.
func (c Config) poolConfig() (*pgxpool.Config, error) {
	var pc *pgxpool.Config
	var err error
	if c.DSN != "" {
		pc, err = pgxpool.ParseConfig(c.DSN)
		if err != nil {
			return nil, errors.New("storage postgres: dsn is not a valid connection string")
		}
	} else {
		// start from libpq's defaults, then set what the keys say
		pc, err = pgxpool.ParseConfig("")
		if err != nil {
			return nil, fmt.Errorf("storage postgres: %w", err)
		}
		host, port, unix, _ := parseAddress(c.Address)
		cc := pc.ConnConfig
		cc.Host, cc.Port, cc.Database = host, port, c.Database
		if c.Username != "" {
			cc.User = c.Username
		}
		cc.Password = c.Password
		cc.Fallbacks = nil
		cc.TLSConfig = nil
		if c.TLS != nil && !unix {
			cc.TLSConfig, err = c.TLS.config(host)
			if err != nil {
				return nil, err
			}
		}
	}
	pc.MaxConns = int32(c.MaxConnections)
	// a statement past its deadline is cancelled on the server too (not just abandoned with
	// its connection, which would let a write blocked on a lock commit later); the connection's
	// deadline follows shortly after, for a server that does not answer at all
	pc.ConnConfig.BuildContextWatcherHandler = func(pgConn *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pgConn, DeadlineDelay: cancelGrace}
	}
	pc.ConnConfig.ConnectTimeout = time.Duration(c.Timeout)
	if pc.ConnConfig.RuntimeParams == nil {
		pc.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = "portcullis"
	}
	return pc, nil
}

// config is the tls.Config of the tls keys, reading their files.
func (t *TLSConfig) config(host string) (*tls.Config, error) {
	minVersion, err := tlsVersion(t.MinimumVersion)
	if err != nil {
		return nil, fmt.Errorf("storage postgres: tls minimum_version %w", err)
	}
	tc := &tls.Config{ServerName: t.ServerName, MinVersion: minVersion, InsecureSkipVerify: t.SkipVerify}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("storage postgres: tls ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("storage postgres: tls ca_file %s holds no PEM certificate", t.CAFile)
		}
	}
	if t.CertificateChain != "" {
		cert, err := tls.LoadX509KeyPair(t.CertificateChain, t.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("storage postgres: tls certificate_chain and private_key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Config returns the configuration the store was opened with, defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// Pool is the store's connection pool, for tests and tools that need SQL of their own.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Destruct stops the change feed and the sweeper, waits for the operations already running and
// closes the pool; it implements caddy.Destructor. Every operation that starts once Destruct has
// begun returns store.ErrClosed. Calling it again does nothing.
func (s *Store) Destruct() error {
	old := s.ops.Or(closedBit)
	if old&closedBit != 0 {
		return nil
	}
	if old == 0 {
		s.drainOnce.Do(func() { close(s.drained) })
	}
	s.feed.setTrusted(false)
	s.cancel()
	<-s.drained
	s.wg.Wait()
	s.pool.Close()
	return nil
}

// lockKey is the advisory-lock key of a purpose in a schema.
func lockKey(purpose, schema string) int64 {
	sum := sha256.Sum256([]byte("portcullis " + purpose + " " + schema))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// do runs one operation: ErrClosed after Destruct, the caller's deadline capped by the timeout,
// its latency and errors counted, and its error mapped (see wrap).
func (s *Store) do(ctx context.Context, op string, f func(ctx context.Context) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	err := f(qctx)
	if err != nil && qctx.Err() == nil && retryable(err) {
		// a connection the server dropped (a restart, a failover) fails the first statement
		// sent on it: every statement of the store may run twice, so try once more, on another
		err = f(qctx)
	}
	err = s.wrap(ctx, op, err)
	s.metrics.observe(op, time.Since(start), err != nil && !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil)
	return err
}

// wrap maps err of operation op: nil and store.ErrNotFound as they are; the caller's own
// cancellation or deadline as ctx.Err(); an error that means the database cannot be reached or
// did not answer within the timeout wrapping store.ErrUnavailable; anything else with context.
func (s *Store) wrap(ctx context.Context, op string, err error) error {
	switch {
	case err == nil, errors.Is(err, store.ErrNotFound):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	case unavailable(err):
		return fmt.Errorf("%w: postgres %s: %w", store.ErrUnavailable, op, err)
	}
	return fmt.Errorf("postgres %s: %w", op, err)
}

// unavailable reports whether err means the database cannot be reached or did not answer in time.
func unavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch c := pgErr.Code; {
		case strings.HasPrefix(c, "08"), // connection exception
			strings.HasPrefix(c, "53"), // insufficient resources (too many connections, disk full, out of memory)
			c == "57P01",               // admin_shutdown
			c == "57P02",               // crash_shutdown
			c == "57P03",               // cannot_connect_now (starting up, recovering)
			c == "57P05",               // idle_session_timeout
			c == "57014",               // query_canceled (the server's statement_timeout)
			c == "25006",               // read_only_sql_transaction (a standby after a failover)
			c == "58000", c == "58030": // system_error, io_error
			return true
		}
		return false
	}
	var certErr *tls.CertificateVerificationError
	var headerErr tls.RecordHeaderError
	if errors.As(err, &certErr) || errors.As(err, &headerErr) {
		return false // the server's certificate, or TLS to a port that speaks none: configuration
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "conn busy")
}

// retryable reports whether err is a lost connection rather than a slow or refusing database.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P05"
	}
	var connectErr *pgconn.ConnectError
	return unavailable(err) && !errors.As(err, &connectErr) &&
		!errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err)
}

// Get returns a copy of the live value under key, store.ErrNotFound, or store.ErrClosed.
func (s *Store) Get(ctx context.Context, key []byte) (value []byte, err error) {
	err = s.do(ctx, "get", func(ctx context.Context) error {
		value, err = s.get(ctx, key)
		return err
	})
	return value, err
}

func (s *Store) get(ctx context.Context, key []byte) ([]byte, error) {
	var v []byte
	err := s.pool.QueryRow(ctx, s.sql.get, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if v == nil && err == nil {
		v = []byte{}
	}
	return v, err
}

// putArgs dedups entries (the last write of a key wins, as in one Badger transaction) into the
// arrays of the put statement: keys, values, and TTLs in microseconds (0: no expiry).
func putArgs(entries []store.Entry) (keys, values [][]byte, ttls []int64) {
	last := make(map[string]int, len(entries))
	for i, e := range entries {
		last[string(e.Key)] = i
	}
	for i, e := range entries {
		if last[string(e.Key)] != i {
			continue
		}
		v := e.Value
		if v == nil {
			v = []byte{}
		}
		var ttl int64
		if e.TTL > 0 {
			ttl = max(e.TTL.Microseconds(), 1)
		}
		keys, values, ttls = append(keys, e.Key), append(values, v), append(ttls, ttl)
	}
	return keys, values, ttls
}

// Put writes all entries in one transaction (one statement): all are stored or none is. Keys
// under a watched prefix are sent to every node's change feed at commit.
func (s *Store) Put(ctx context.Context, entries ...store.Entry) error {
	if len(entries) == 0 {
		if err := s.enter(); err != nil {
			return err
		}
		s.leave()
		return nil
	}
	return s.do(ctx, "put", func(ctx context.Context) error {
		keys, values, ttls := putArgs(entries)
		payloads := s.feed.payloads(keys, true)
		_, err := s.pool.Exec(ctx, s.sql.put, keys, values, ttls, s.feed.channel, payloads)
		s.feed.sent(payloads, err)
		return err
	})
}

// PutSync writes the entries as Put does, with synchronous_commit on: it returns once the
// commit is flushed to disk (and to synchronous standbys, where the server has them).
func (s *Store) PutSync(ctx context.Context, entries ...store.Entry) error {
	if len(entries) == 0 {
		if err := s.enter(); err != nil {
			return err
		}
		s.leave()
		return nil
	}
	return s.do(ctx, "put_sync", func(ctx context.Context) error {
		keys, values, ttls := putArgs(entries)
		payloads := s.feed.payloads(keys, true)
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit TO on"); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, s.sql.put, keys, values, ttls, s.feed.channel, payloads)
			return err
		})
		s.feed.sent(payloads, err)
		return err
	})
}

// Delete removes the keys in one transaction; missing keys are not an error. Every key given is
// sent to every node's change feed at commit, present or not, so that deleting a key never
// written (an "end" marker a cache watches) is how a node tells the others something ended.
func (s *Store) Delete(ctx context.Context, keys ...[]byte) error {
	if len(keys) == 0 {
		if err := s.enter(); err != nil {
			return err
		}
		s.leave()
		return nil
	}
	return s.do(ctx, "delete", func(ctx context.Context) error {
		payloads := s.feed.payloads(keys, false)
		_, err := s.pool.Exec(ctx, s.sql.del, keys, s.feed.channel, payloads)
		s.feed.sent(payloads, err)
		return err
	})
}

// successor is the least byte string greater than every string that starts with prefix, or nil
// when there is none (prefix empty or all 0xff).
func successor(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xff {
			s := append([]byte(nil), prefix[:i+1]...)
			s[i]++
			return s
		}
	}
	return nil
}

// Keys returns every live key that starts with prefix, in byte order: a range scan of the
// primary key.
func (s *Store) Keys(ctx context.Context, prefix []byte) (keys [][]byte, err error) {
	err = s.do(ctx, "keys", func(ctx context.Context) error {
		var rows pgx.Rows
		var err error
		if prefix == nil {
			prefix = []byte{}
		}
		if end := successor(prefix); end != nil {
			rows, err = s.pool.Query(ctx, s.sql.keysRange, prefix, end)
		} else {
			rows, err = s.pool.Query(ctx, s.sql.keysFrom, prefix)
		}
		if err != nil {
			return err
		}
		keys, err = pgx.CollectRows(rows, pgx.RowTo[[]byte])
		return err
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// GetOrCreate returns the live value under key or, when there is none, stores and returns the
// value create makes. It is atomic across nodes: when several nodes (or goroutines) race, create
// may run on more than one, but one value is stored and every caller gets that one. An expired
// row counts as absent and is replaced.
func (s *Store) GetOrCreate(ctx context.Context, key []byte, create func() ([]byte, error)) ([]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	s.initMu.Lock()
	defer s.initMu.Unlock()
	for range 5 {
		v, err := s.Get(ctx, key)
		if err == nil || !errors.Is(err, store.ErrNotFound) {
			return v, err
		}
		v, err = create()
		if err != nil {
			return nil, err
		}
		if v == nil {
			v = []byte{}
		}
		var inserted bool
		err = s.do(ctx, "get_or_create", func(ctx context.Context) error {
			payloads := s.feed.payloads([][]byte{key}, true)
			var n int64
			err := s.pool.QueryRow(ctx, s.sql.insertIfAbsent, key, v, s.feed.channel, payloads).Scan(&n, new(int64))
			inserted = n == 1
			if inserted {
				s.feed.sent(payloads, err)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if inserted {
			return v, nil
		}
		// another node stored one first: read it (unless it was deleted since, then again)
		v, err = s.Get(ctx, key)
		if !errors.Is(err, store.ErrNotFound) {
			return v, err
		}
	}
	return nil, fmt.Errorf("postgres get_or_create: the key kept disappearing between insert and read")
}

// Create stores e unless a live row holds its key (an expired one is replaced), and reports
// whether it stored it, in one statement. It is atomic across nodes: of calls racing for one key,
// exactly one stores its entry and the others report false.
func (s *Store) Create(ctx context.Context, e store.Entry) (created bool, err error) {
	err = s.do(ctx, "create", func(ctx context.Context) error {
		keys, values, ttls := putArgs([]store.Entry{e})
		payloads := s.feed.payloads(keys, true)
		var n int64
		err := s.pool.QueryRow(ctx, s.sql.create, keys[0], values[0], ttls[0], s.feed.channel, payloads).Scan(&n, new(int64))
		created = err == nil && n == 1
		if created {
			s.feed.sent(payloads, err)
		}
		return err
	})
	return created, err
}

// sweepLoop runs Sweep every sweepEvery (with jitter, so that nodes started together do not
// all try at once) until Destruct.
func (s *Store) sweepLoop() {
	defer s.wg.Done()
	for {
		wait := s.sweepEvery + time.Duration(time.Now().UnixNano()%int64(s.sweepEvery/4+1))
		select {
		case <-s.bg.Done():
			return
		case <-time.After(wait):
		}
		n, err := s.Sweep(s.bg)
		switch {
		case err == nil && n > 0:
			s.logger.Debug("swept expired rows", zap.Int64("rows", n))
		case err != nil && !errors.Is(err, store.ErrClosed) && s.bg.Err() == nil:
			s.logger.Warn("sweeping expired rows", zap.Error(err))
		}
	}
}

// Sweep deletes expired rows, in batches, unless another node is sweeping this schema right
// now (an advisory lock decides); it returns how many it deleted. Reads never return expired
// rows, so sweeping only reclaims space. The sweeper calls it every minute.
func (s *Store) Sweep(ctx context.Context) (deleted int64, err error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	var conn *pgxpool.Conn
	err = s.do(ctx, "sweep", func(ctx context.Context) error {
		c, err := s.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		var locked bool
		if err := c.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey("sweep", s.cfg.Schema)).Scan(&locked); err != nil {
			c.Release()
			return err
		}
		if !locked {
			c.Release()
			return nil
		}
		conn = c
		return nil
	})
	if err != nil || conn == nil {
		return 0, err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", lockKey("sweep", s.cfg.Schema)); err != nil {
			// a session that may still hold the lock must not go back to the pool
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}()
	for {
		var n int64
		err := s.do(ctx, "sweep", func(ctx context.Context) error {
			tag, err := conn.Exec(ctx, s.sql.sweep, sweepBatch)
			n = tag.RowsAffected()
			return err
		})
		deleted += n
		if err != nil || n < sweepBatch {
			return deleted, err
		}
	}
}
