package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// openConfig opens a store with c, destructed when t ends.
func openConfig(t *testing.T, c Config, o options) *Store {
	t.Helper()
	s, err := open(context.Background(), c, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Destruct() })
	return s
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// The database crash-stops and comes back: the store stops trusting its feed at once, every
// operation fails with ErrUnavailable within its timeout (no hang, no panic), and when the
// server is back the store recovers by itself: the Watch fns hear a nil key before it trusts
// again, the data is there, operations and changes work.
func TestDatabaseCrashAndRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server of its own")
	}
	srv := pgtest.Start(t)
	c := Config{DSN: srv.DSN("portcullis"), Timeout: duration.Duration(time.Second)}
	a, b := openConfig(t, c, options{}), openConfig(t, c, options{})
	ctx := t.Context()
	must(t, a.Put(ctx, store.Entry{Key: []byte("tok/kept"), Value: []byte("v")}))
	var nilWhileUntrusted, nilWhileTrusted atomic.Int32
	rec := newRecorder()
	a.Watch([]byte("tok/"), func(key []byte) {
		if key == nil {
			if a.Trusted() {
				nilWhileTrusted.Add(1)
			} else {
				nilWhileUntrusted.Add(1)
			}
		}
		rec.fn(key)
	})

	srv.Stop()
	took := waitFor(t, 2*time.Second, "Trusted() false after the server stopped", func() bool { return !a.Trusted() && !b.Trusted() })
	t.Logf("Trusted() false %v after the server stopped", took)
	if counterValue(a.metrics.listenerUp) != 0 {
		t.Error("listener_up still 1 while the server is down")
	}
	for name, op := range map[string]func() error{
		"Get":     func() error { _, err := a.Get(ctx, []byte("tok/kept")); return err },
		"Put":     func() error { return a.Put(ctx, store.Entry{Key: []byte("tok/x"), Value: []byte("v")}) },
		"PutSync": func() error { return a.PutSync(ctx, store.Entry{Key: []byte("tok/x"), Value: []byte("v")}) },
		"Delete":  func() error { return a.Delete(ctx, []byte("tok/x")) },
		"Keys":    func() error { _, err := a.Keys(ctx, []byte("tok/")); return err },
		"GetOrCreate": func() error {
			_, err := a.GetOrCreate(ctx, []byte("meta/x"), func() ([]byte, error) { return []byte("x"), nil })
			return err
		},
		"Sweep": func() error { _, err := a.Sweep(ctx); return err },
	} {
		start := time.Now()
		err := op()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with the server down: %v, want ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s with the server down took %v (timeout 1s)", name, d)
		}
	}
	if counterValue(a.metrics.errors.WithLabelValues("get")) < 1 {
		t.Error("errors_total{operation=get} not counted")
	}
	// the caller's own deadline is the caller's error, not the database's
	short, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.Get(short, []byte("tok/kept")); !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Get with a cancelled context while down: %v, want context.Canceled", err)
	}
	if a.Trusted() {
		t.Fatal("trusted while the server is down")
	}

	srv.StartAgain()
	took = waitFor(t, 5*time.Second, "Trusted() true again after the server came back", func() bool { return a.Trusted() && b.Trusted() })
	t.Logf("Trusted() true %v after the server accepted connections again", took)
	if nilWhileUntrusted.Load() < 1 || nilWhileTrusted.Load() != 0 {
		t.Fatalf("Watch fn got %d nil keys before trusting again and %d after; want at least one before, none after", nilWhileUntrusted.Load(), nilWhileTrusted.Load())
	}
	v, err := a.Get(ctx, []byte("tok/kept"))
	if err != nil || string(v) != "v" {
		t.Fatalf("after recovery: %q %v", v, err)
	}
	for len(rec.ch) > 0 {
		<-rec.ch
	}
	must(t, b.Delete(ctx, []byte("tok/kept")))
	if k := rec.next(t, time.Second); k != "tok/kept" {
		t.Fatalf("change after recovery: %q", k)
	}
	if counterValue(a.metrics.listenerUp) != 1 {
		t.Error("listener_up not 1 again")
	}
}

// The listening connection alone is killed (an administrator, a proxy's idle cut): the store
// notices, listens again within a fraction of a second and tells the caches to forget.
func TestListenerKilled(t *testing.T) {
	srv := newServer(t)
	dsn := srv.Database(t)
	a := openDSN(t, dsn, options{})
	rec := newRecorder()
	a.Watch([]byte("x/"), rec.fn)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var killed bool
	if err := conn.QueryRow(t.Context(), "SELECT pg_terminate_backend($1)", a.feed.pid.Load()).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminating the listener: %v %v", killed, err)
	}
	if k := rec.next(t, 2*time.Second); k != "<nil>" {
		t.Fatalf("got %q, want a nil key", k)
	}
	waitFor(t, time.Second, "trusted again", a.Trusted)
	must(t, a.Delete(t.Context(), []byte("x/1")))
	if k := rec.next(t, time.Second); k != "x/1" {
		t.Fatalf("got %q, want x/1", k)
	}
}

// A statement that outlasts the timeout (here: a write waiting for a row another transaction
// holds) ends with ErrUnavailable at the timeout and is cancelled on the server, so it does not
// commit later; a caller's own shorter deadline or cancellation is returned as ctx.Err().
func TestTimeoutAndCallerCancellation(t *testing.T) {
	srv := newServer(t)
	dsn := srv.Database(t)
	s := openConfig(t, Config{DSN: dsn, Timeout: duration.Duration(300 * time.Millisecond)}, options{})
	ctx := t.Context()
	must(t, s.Put(ctx, store.Entry{Key: []byte("k"), Value: []byte("before")}))
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM portcullis_kv WHERE key = 'k' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Put(ctx, store.Entry{Key: []byte("k"), Value: []byte("blocked")})
	took := time.Since(start)
	if !errors.Is(err, store.ErrUnavailable) || took < 300*time.Millisecond || took > 1500*time.Millisecond {
		t.Fatalf("a write blocked past the timeout: %v after %v, want ErrUnavailable after about 300ms", err, took)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = s.Put(short, store.Entry{Key: []byte("k"), Value: []byte("blocked")})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a write blocked past the caller's deadline: %v, want context.DeadlineExceeded", err)
	}
	// reads do not wait for the lock
	v, err := s.Get(ctx, []byte("k"))
	if err != nil || string(v) != "before" {
		t.Fatalf("read beside the lock: %q %v", v, err)
	}
	must(t, tx.Rollback(ctx))
	time.Sleep(200 * time.Millisecond)
	if v, _ := s.Get(ctx, []byte("k")); string(v) != "before" {
		t.Fatalf("a write that timed out committed later: %q", v)
	}
}

// Two nodes starting at once on a fresh database (and a fresh schema) migrate it once.
func TestMigrationsRace(t *testing.T) {
	srv := newServer(t)
	for round := range 3 {
		dsn := srv.Database(t)
		schema := fmt.Sprintf("auth_%d", round)
		errs := make(chan error, 4)
		stores := make(chan *Store, 4)
		for range 4 {
			go func() {
				s, err := open(t.Context(), Config{DSN: dsn, Schema: schema}, nil, options{})
				errs <- err
				stores <- s
			}()
		}
		for range 4 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			s := <-stores
			t.Cleanup(func() { s.Destruct() })
		}
		conn, err := pgx.Connect(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		var versions, max int
		err = conn.QueryRow(t.Context(), "SELECT count(*), max(version) FROM "+schema+".portcullis_migrations").Scan(&versions, &max)
		conn.Close(context.Background())
		if err != nil || versions != len(migrations) || max != len(migrations) {
			t.Fatalf("round %d: %d migration rows up to version %d (%v), want each of the %d once", round, versions, max, err, len(migrations))
		}
	}
	// a store in one schema does not see another schema's rows, nor its changes
	dsn := srv.Database(t)
	one, two := openConfig(t, Config{DSN: dsn, Schema: "one"}, options{}), openConfig(t, Config{DSN: dsn, Schema: "two"}, options{})
	rec := newRecorder()
	two.Watch([]byte("k"), rec.fn)
	must(t, one.Put(t.Context(), store.Entry{Key: []byte("k"), Value: []byte("v")}))
	must(t, one.Delete(t.Context(), []byte("k")))
	must(t, one.Put(t.Context(), store.Entry{Key: []byte("k"), Value: []byte("v")}))
	if _, err := two.Get(t.Context(), []byte("k")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("schema two reads schema one's key: %v", err)
	}
	rec.none(t, 200*time.Millisecond)
}

// The sweeper deletes expired rows (reads already skip them), one node at a time.
func TestSweeper(t *testing.T) {
	srv := newServer(t)
	dsn := srv.Database(t)
	count := func(s *Store) (n int) {
		t.Helper()
		if err := s.pool.QueryRow(t.Context(), "SELECT count(*) FROM portcullis_kv").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	manual := openDSN(t, dsn, options{sweepEvery: time.Hour})
	var entries []store.Entry
	for i := range 2500 {
		entries = append(entries, store.Entry{Key: []byte(fmt.Sprintf("tok/%d", i)), Value: []byte("v"), TTL: time.Millisecond})
	}
	must(t, manual.Put(t.Context(), append(entries, store.Entry{Key: []byte("live"), Value: []byte("v")}, store.Entry{Key: []byte("later"), Value: []byte("v"), TTL: time.Hour})...))
	time.Sleep(10 * time.Millisecond)
	if keys, err := manual.Keys(t.Context(), nil); err != nil || len(keys) != 2 {
		t.Fatalf("reads list %d keys (%v), want the 2 live ones", len(keys), err)
	}
	if n := count(manual); n != 2502 {
		t.Fatalf("%d rows before sweeping", n)
	}
	// another node sweeping: this one does nothing
	conn, err := manual.pool.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), "SELECT pg_advisory_lock($1)", lockKey("sweep", "public")); err != nil {
		t.Fatal(err)
	}
	if n, err := manual.Sweep(t.Context()); err != nil || n != 0 || count(manual) != 2502 {
		t.Fatalf("swept %d (%v) while another node holds the lock", n, err)
	}
	if _, err := conn.Exec(t.Context(), "SELECT pg_advisory_unlock($1)", lockKey("sweep", "public")); err != nil {
		t.Fatal(err)
	}
	conn.Release()
	// in batches of sweepBatch, until none is left
	if n, err := manual.Sweep(t.Context()); err != nil || n != 2500 || count(manual) != 2 {
		t.Fatalf("swept %d (%v), %d rows left; want 2500 swept, 2 left", n, err, count(manual))
	}
	// the loop does it by itself
	auto := openDSN(t, dsn, options{sweepEvery: 50 * time.Millisecond})
	must(t, auto.Put(t.Context(), entries[:10]...))
	waitFor(t, 3*time.Second, "the sweeper loop deletes expired rows", func() bool { return count(auto) == 2 })
}

// Open refuses what Validate refuses and unreadable TLS files, naming the key; a database that
// cannot be reached is ErrUnavailable.
func TestOpenErrors(t *testing.T) {
	if _, err := Open(t.Context(), Config{Address: "db:5432", Database: "d"}, nil); err == nil {
		t.Error("Open accepted an address Validate refuses")
	}
	_, err := Open(t.Context(), Config{Address: "tcp://127.0.0.1:1", Database: "d", TLS: &TLSConfig{CAFile: "/nonexistent/ca.pem"}}, nil)
	if err == nil || !contains(err.Error(), "tls ca_file") {
		t.Errorf("unreadable ca_file: %v", err)
	}
	start := time.Now()
	_, err = Open(t.Context(), Config{Address: "tcp://127.0.0.1:1", Database: "d", Username: "u", Password: "hunter2", Timeout: duration.Duration(time.Second)}, nil)
	if !errors.Is(err, store.ErrUnavailable) || time.Since(start) > 3*time.Second {
		t.Errorf("nothing listening: %v after %v, want ErrUnavailable at once", err, time.Since(start))
	}
	if err != nil && contains(err.Error(), "hunter2") {
		t.Errorf("the error repeats the password: %v", err)
	}
	// keys rather than a DSN, against the real server: the address, database, user and password
	srv := newServer(t)
	dsn := srv.Database(t)
	cfg, _ := pgx.ParseConfig(dsn)
	s := openConfig(t, Config{Address: fmt.Sprintf("tcp://%s:%d", srv.Host, srv.Port), Database: cfg.Database, Username: pgtest.User, Password: pgtest.Password}, options{})
	must(t, s.Put(t.Context(), store.Entry{Key: []byte("k"), Value: []byte("v")}))
	s2 := openConfig(t, Config{Address: fmt.Sprintf("unix://%s/.s.PGSQL.%d", srv.Dir, srv.Port), Database: cfg.Database, Username: pgtest.User}, options{})
	if v, err := s2.Get(t.Context(), []byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("over the Unix socket: %q %v", v, err)
	}
	if _, err := Open(t.Context(), Config{Address: fmt.Sprintf("tcp://%s:%d", srv.Host, srv.Port), Database: cfg.Database, Username: pgtest.User, Password: "wrong"}, nil); err == nil || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a wrong password: %v, want an error that is not ErrUnavailable", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
