package regulation_test

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/regulation"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// sharedNodes opens n regulators, each on its own PostgreSQL store on one fresh database of srv:
// n nodes of one cluster.
func sharedNodes(t *testing.T, srv *pgtest.Server, cfg regulation.Config, n int) []*regulation.Regulator {
	t.Helper()
	dsn := srv.Database(t)
	regs := make([]*regulation.Regulator, n)
	for i := range regs {
		kv, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn}, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kv.Destruct() })
		if regs[i], err = regulation.New(t.Context(), cfg, kv); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(regs[i].Close)
	}
	return regs
}

// burst starts attempts of john from ip at once, spread over regs in turn, each one a wrong
// password (or second factor) when let in; it returns how many were let through to the check.
func burst(t *testing.T, regs []*regulation.Regulator, attempts int, ip netip.Addr, secondFactor bool) int {
	t.Helper()
	var let atomic.Int32
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range attempts {
		done.Add(1)
		go func() {
			defer done.Done()
			r := regs[i%len(regs)]
			start.Wait()
			var ok bool
			if secondFactor {
				_, ok = r.BeginSecondFactor(context.Background(), "john", ip)
			} else {
				var err error
				if _, ok, err = r.Enter(context.Background(), "john", ip); err != nil {
					t.Errorf("attempt %d: %v", i, err)
				}
			}
			if ok {
				let.Add(1)
				time.Sleep(2 * time.Millisecond) // the password check; then it fails: nothing to settle
			}
		}()
	}
	start.Done()
	done.Wait()
	return int(let.Load())
}

// TestSharedBurstBound: attempts started at once, on one node or spread over two, never get more
// than max_retries checks of a pair past the regulator, as on a single Badger node.
func TestSharedBurstBound(t *testing.T) {
	srv := pgtest.Start(t)
	cfg := regulation.Config{MaxRetries: 3, FindTime: time.Minute, BanTime: time.Minute}
	ip := netip.MustParseAddr("203.0.113.9")
	for _, c := range []struct {
		name         string
		nodes        int
		secondFactor bool
	}{
		{"password, two nodes", 2, false},
		{"password, one node", 1, false},
		{"second factor, two nodes", 2, true},
		{"second factor, one node", 1, true},
		{"password, single node in memory", 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var regs []*regulation.Regulator
			if c.nodes == 0 {
				r, err := regulation.New(t.Context(), cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				regs = []*regulation.Regulator{r}
			} else {
				regs = sharedNodes(t, srv, cfg, c.nodes)
			}
			if let := burst(t, regs, 40, ip, c.secondFactor); let != cfg.MaxRetries {
				t.Errorf("40 attempts at once: %d let through to the check, want max_retries = %d", let, cfg.MaxRetries)
			}
			// the pair is banned on every node afterwards
			for i, r := range regs {
				deadline := time.Now().Add(time.Second)
				for {
					_, banned, err := r.Check(t.Context(), "john", ip)
					if err != nil {
						t.Fatal(err)
					}
					if banned {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("node %d: the pair is not banned after the burst", i)
					}
					time.Sleep(time.Millisecond)
				}
			}
			if let := burst(t, regs, 10, ip, c.secondFactor); let != 0 {
				t.Errorf("after the ban: %d let through", let)
			}
		})
	}
}

// TestSharedGiveBack: a success or an abandoned attempt gives its place back across nodes, as the
// single-node regulator does, and the place a failure took stays taken.
func TestSharedGiveBack(t *testing.T) {
	srv := pgtest.Start(t)
	cfg := regulation.Config{MaxRetries: 3, FindTime: time.Minute, BanTime: time.Minute}
	ctx := t.Context()
	ip := netip.MustParseAddr("198.51.100.7")
	for _, nodes := range []int{0, 2} {
		var regs []*regulation.Regulator
		if nodes == 0 {
			r, err := regulation.New(ctx, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			regs = []*regulation.Regulator{r, r}
		} else {
			regs = sharedNodes(t, srv, cfg, nodes)
		}
		a, b := regs[0], regs[1]
		enter := func(r *regulation.Regulator, user string) *regulation.Attempt {
			t.Helper()
			att, ok, err := r.Enter(ctx, user, ip)
			if err != nil || !ok {
				t.Fatalf("%d nodes: %s refused: %v %v", nodes, user, ok, err)
			}
			return att
		}
		// two failures on A, then attempts on B abandoned: each gives its place back
		for range 2 {
			enter(a, "john")
		}
		for range 5 {
			enter(b, "john").Abandoned()
		}
		// a success on B clears the pair's failures: three more checks, then the ban
		enter(b, "john").Succeeded()
		for i := range 3 {
			att := enter(regs[i%2], "john")
			if att.Banned != (i == 2) {
				t.Errorf("%d nodes: failure %d after the success: Banned %v", nodes, i+1, att.Banned)
			}
		}
		if _, ok, err := b.Enter(ctx, "john", ip); ok || err != nil {
			t.Errorf("%d nodes: a fourth failure after the success was let in (%v)", nodes, err)
		}
		// the address: 10 failures of several users ban it; a success of another user that
		// reaches the limit gives its place back and lifts the ban
		ip2 := netip.MustParseAddr("198.51.100.8")
		for i := range 9 {
			if _, ok, err := regs[i%2].Enter(ctx, string(rune('a'+i)), ip2); !ok || err != nil {
				t.Fatalf("%d nodes: user %d at the address refused: %v", nodes, i, err)
			}
		}
		att, ok, err := a.Enter(ctx, "mary", ip2)
		if !ok || err != nil || !att.Banned {
			t.Fatalf("%d nodes: the tenth attempt at the address: ok %v, banned %v, %v", nodes, ok, att != nil && att.Banned, err)
		}
		att.Succeeded()
		deadline := time.Now().Add(time.Second)
		for {
			att, ok, err := b.Enter(ctx, "paul", ip2)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				att.Abandoned()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d nodes: the address stays banned after a success gave its place back", nodes)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// counting counts the statements a regulator sends to its store.
type counting struct {
	*postgres.Store
	n atomic.Int32
}

func (c *counting) Get(ctx context.Context, k []byte) ([]byte, error) {
	c.n.Add(1)
	return c.Store.Get(ctx, k)
}
func (c *counting) Put(ctx context.Context, e ...store.Entry) error {
	c.n.Add(1)
	return c.Store.Put(ctx, e...)
}
func (c *counting) Delete(ctx context.Context, k ...[]byte) error {
	c.n.Add(1)
	return c.Store.Delete(ctx, k...)
}
func (c *counting) Keys(ctx context.Context, p []byte) ([][]byte, error) {
	c.n.Add(1)
	return c.Store.Keys(ctx, p)
}
func (c *counting) Create(ctx context.Context, e store.Entry) (bool, error) {
	c.n.Add(1)
	return c.Store.Create(ctx, e)
}

// TestSharedRoundTrips: a normal sign-in (no failures, no ban) costs one statement per counted
// key to begin and one to settle.
func TestSharedRoundTrips(t *testing.T) {
	srv := pgtest.Start(t)
	kv, err := postgres.Open(t.Context(), postgres.Config{DSN: srv.Database(t)}, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Destruct() })
	c := &counting{Store: kv}
	r, err := regulation.New(t.Context(), regulation.Config{MaxRetries: 3}, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	ip := netip.MustParseAddr("192.0.2.50")
	// until the bans are loaded and the feed is trusted, checks read the store
	for deadline := time.Now().Add(5 * time.Second); ; {
		c.n.Store(0)
		if _, _, err := r.Check(t.Context(), "warm", ip); err != nil {
			t.Fatal(err)
		}
		if c.n.Load() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("checks still read the store after 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.n.Store(0)
	att, ok, err := r.Enter(t.Context(), "john", ip)
	if !ok || err != nil {
		t.Fatalf("Enter: %v %v", ok, err)
	}
	begin := c.n.Load()
	att.Succeeded()
	if begin != 2 || c.n.Load() != 3 {
		t.Errorf("a normal sign-in: %d statements to begin, %d in all; want 2 (a slot of the pair and of the address) and 3 (one deletion)", begin, c.n.Load())
	}
}
