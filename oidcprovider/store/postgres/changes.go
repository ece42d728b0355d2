package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"go.uber.org/zap"
)

// The change feed: writers send the changed keys with pg_notify inside their transaction (so
// they are delivered at commit, in commit order), and every node's listening connection
// receives them and calls the Watch fns.
//
// A payload is the changed keys, each in unpadded standard base64 ("=" for the empty key),
// separated by spaces, shorter than PostgreSQL's 8000-byte limit; a key too long for one
// payload is sent as "*", which every node takes as "forget everything".
const (
	maxPayload = 7999
	resetAll   = "*"

	// idleWait is how long the listener waits for a notification before it checks the
	// connection with a keepalive that must answer within keepaliveTimeout: together, a
	// connection dead without a word (a cut cable) is noticed within about a second; one that
	// the server closes (a crash or a shutdown) at once.
	idleWait         = 250 * time.Millisecond
	keepaliveTimeout = 750 * time.Millisecond

	// reconnectFirst and reconnectMax bound the backoff between attempts to listen again.
	reconnectFirst = 50 * time.Millisecond
	reconnectMax   = time.Second
)

// channelName is the notification channel of a schema: "portcullis.<schema>", or a digest of
// the schema when that would be longer than PostgreSQL's 63-byte identifiers.
func channelName(schema string) string {
	c := "portcullis." + schema
	if len(c) > 63 {
		sum := sha256.Sum256([]byte(schema))
		c = "portcullis." + hex.EncodeToString(sum[:16])
	}
	return c
}

type watcher struct {
	prefix  []byte
	fn      func(key []byte)
	stopped atomic.Bool
}

type feed struct {
	s       *Store
	pid     atomic.Uint32 // the listening connection's server process, for tests
	connCfg *pgx.ConnConfig
	channel string
	trusted atomic.Bool

	mu       sync.Mutex
	watchers atomic.Pointer[[]*watcher] // replaced, never changed in place, under mu
}

func (f *feed) init(s *Store, cc *pgx.ConnConfig, channel string) {
	f.s, f.connCfg, f.channel = s, cc.Copy(), channel
	// the listener's idle waits end by their deadline, without a cancel request each time
	f.connCfg.BuildContextWatcherHandler = func(pgConn *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pgConn.Conn()}
	}
	f.watchers.Store(&[]*watcher{})
}

func (f *feed) setTrusted(v bool) {
	f.trusted.Store(v)
	if v {
		f.s.metrics.listenerUp.Set(1)
	} else {
		f.s.metrics.listenerUp.Set(0)
	}
}

// Watch calls fn with the key of every change under prefix made by any node (this one
// included), on the store's listening goroutine, one call at a time; fn must be quick and must
// not call the store. When the listening connection comes back after a loss, fn is called with a
// nil key first: forget everything under prefix. The returned stop ends the calls (a call
// already running finishes); it may be called from fn.
func (s *Store) Watch(prefix []byte, fn func(key []byte)) (stop func()) {
	w := &watcher{prefix: append([]byte(nil), prefix...), fn: fn}
	f := &s.feed
	f.mu.Lock()
	old := *f.watchers.Load()
	next := append(old[:len(old):len(old)], w)
	f.watchers.Store(&next)
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			w.stopped.Store(true)
			f.mu.Lock()
			defer f.mu.Unlock()
			old := *f.watchers.Load()
			next := make([]*watcher, 0, len(old))
			for _, o := range old {
				if o != w {
					next = append(next, o)
				}
			}
			f.watchers.Store(&next)
		})
	}
}

// Trusted reports whether this node is receiving changes: false while its listening connection
// is down and until, once it is back, every Watch fn has been called with a nil key; false after
// Destruct.
func (s *Store) Trusted() bool {
	return s.feed.trusted.Load() && s.ops.Load()&closedBit == 0
}

// watched reports whether a Watch of this node covers key.
func (f *feed) watched(key []byte) bool {
	for _, w := range *f.watchers.Load() {
		if hasPrefix(key, w.prefix) {
			return true
		}
	}
	return false
}

func hasPrefix(key, prefix []byte) bool {
	return len(key) >= len(prefix) && string(key[:len(prefix)]) == string(prefix)
}

// payloads encodes keys (only the watched ones when onlyWatched) into notification payloads.
func (f *feed) payloads(keys [][]byte, onlyWatched bool) []string {
	var out []string
	var b strings.Builder
	for _, k := range keys {
		if onlyWatched && !f.watched(k) {
			continue
		}
		enc := "="
		if len(k) > 0 {
			enc = base64.RawStdEncoding.EncodeToString(k)
		}
		if len(enc) > maxPayload {
			enc = resetAll
		}
		if b.Len() > 0 && b.Len()+1+len(enc) > maxPayload {
			out = append(out, b.String())
			b.Reset()
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(enc)
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// sent counts the keys of payloads a write committed.
func (f *feed) sent(payloads []string, err error) {
	if err != nil {
		return
	}
	n := 0
	for _, p := range payloads {
		n += strings.Count(p, " ") + 1
	}
	f.s.metrics.changesSent.Add(float64(n))
}

// deliver calls the Watch fns for the keys of one payload.
func (f *feed) deliver(payload string) {
	ws := *f.watchers.Load()
	n := 0
	for _, enc := range strings.Split(payload, " ") {
		n++
		if enc == resetAll {
			f.reset()
			continue
		}
		var key []byte
		if enc != "=" {
			var err error
			if key, err = base64.RawStdEncoding.DecodeString(enc); err != nil {
				f.s.logger.Warn("change feed: a payload this version cannot read; forgetting every cached record", zap.Error(err))
				f.reset()
				continue
			}
		} else {
			key = []byte{}
		}
		for _, w := range ws {
			if hasPrefix(key, w.prefix) && !w.stopped.Load() {
				w.fn(key)
			}
		}
	}
	f.s.metrics.changesReceived.Add(float64(n))
}

// reset calls every Watch fn with a nil key.
func (f *feed) reset() {
	for _, w := range *f.watchers.Load() {
		if !w.stopped.Load() {
			w.fn(nil)
		}
	}
}

// listen opens the listening connection (not one of the pool's) and starts listening.
func (f *feed) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, f.connCfg.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{f.channel}.Sanitize()); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	f.pid.Store(conn.PgConn().PID())
	return conn, nil
}

// run is the listening goroutine: it serves conn until it fails, then listens again with
// backoff, resets the Watch fns and trusts again, until ctx is done.
func (f *feed) run(ctx context.Context, conn *pgx.Conn) {
	defer f.s.wg.Done()
	backoff := reconnectFirst
	for {
		if conn != nil {
			err := f.serve(ctx, conn)
			f.setTrusted(false)
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Close(cctx)
			cancel()
			conn = nil
			if ctx.Err() != nil {
				return
			}
			f.s.logger.Warn("change feed: the listening connection is lost; caches are not trusted until it is back", zap.Error(err))
			if !pgconn.Timeout(err) && !errors.Is(err, context.DeadlineExceeded) {
				// the server closed it: the pool's connections are likely gone too (a
				// restart), so drop them rather than fail a request on each
				f.s.pool.Reset()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		lctx, cancel := context.WithTimeout(ctx, f.s.timeout)
		c, err := f.listen(lctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			f.s.logger.Debug("change feed: listening again failed", zap.Duration("next_try", min(backoff*2, reconnectMax)), zap.Error(err))
			backoff = min(backoff*2, reconnectMax)
			continue
		}
		backoff = reconnectFirst
		// changes made while nobody listened are lost: every cache forgets what it holds
		f.reset()
		if ctx.Err() != nil { // Destruct began meanwhile: stay untrusted
			_ = c.Close(context.Background())
			return
		}
		f.setTrusted(true)
		f.s.logger.Info("change feed: listening again; caches are trusted")
		conn = c
	}
}

// serve waits for notifications on conn and delivers them, checking the connection with a
// keepalive when idle; it returns the error that ended it.
func (f *feed) serve(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, idleWait)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if n != nil {
			f.deliver(n.Payload)
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !pgconn.Timeout(err) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		kctx, cancel := context.WithTimeout(ctx, keepaliveTimeout)
		_, err = conn.Exec(kctx, "SELECT 1")
		cancel()
		if err != nil {
			return err
		}
	}
}
