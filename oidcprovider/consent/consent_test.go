package consent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

func openStore(t *testing.T, dir string) *store.Badger {
	t.Helper()
	kv, err := store.Open(dir, store.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

var (
	t0       = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	week     = 7 * 24 * time.Hour
	scopes   = []string{"openid", "profile", "email"}
	audience = []string{"https://api.example.com"}
)

func TestRoundTripAndPersistence(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	kv := openStore(t, dir)
	s := NewStore(kv)
	g, err := s.Remember(ctx, "john", "grafana", scopes, audience, week, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.ID) != 22 || g.Username != "john" || g.ClientID != "grafana" ||
		!slices.Equal(g.Scopes, []string{"email", "openid", "profile"}) ||
		!slices.Equal(g.Audience, audience) || !g.GrantedAt.Equal(t0) || !g.ExpiresAt.Equal(t0.Add(week)) {
		t.Fatalf("remembered %+v", g)
	}
	found, ok, err := s.Find(ctx, "john", "grafana", scopes, audience, t0.Add(time.Hour))
	if err != nil || !ok || found.ID != g.ID {
		t.Fatalf("find: %+v %v %v", found, ok, err)
	}
	if err := kv.Destruct(); err != nil {
		t.Fatal(err)
	}

	kv = openStore(t, dir)
	defer kv.Destruct()
	s = NewStore(kv)
	list, err := s.List(ctx, "john", t0.Add(time.Hour))
	if err != nil || len(list) != 1 || list[0].ID != g.ID || !list[0].GrantedAt.Equal(t0) {
		t.Fatalf("list after reopening: %+v %v", list, err)
	}
	if ok, err := s.Withdraw(ctx, "john", g.ID); err != nil || !ok {
		t.Fatalf("withdraw: %v %v", ok, err)
	}
	if _, ok, err := s.Find(ctx, "john", "grafana", scopes, audience, t0.Add(time.Hour)); err != nil || ok {
		t.Fatalf("found a withdrawn grant: %v %v", ok, err)
	}
	if ok, err := s.Withdraw(ctx, "john", g.ID); err != nil || ok {
		t.Fatalf("second withdraw: %v %v", ok, err)
	}
	// nothing left behind
	for _, p := range []string{grantPrefix, matchPrefix} {
		if keys, _ := kv.Keys(ctx, []byte(p)); len(keys) != 0 {
			t.Fatalf("keys left under %s: %q", p, keys)
		}
	}
}

func TestExactMatchOnly(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	defer kv.Destruct()
	s := NewStore(kv)
	if _, err := s.Remember(ctx, "john", "grafana", scopes, audience, week, t0); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Minute)
	cases := []struct {
		name             string
		user, client     string
		scopes, audience []string
		want             bool
	}{
		{"same", "john", "grafana", scopes, audience, true},
		{"reordered and duplicated", "john", "grafana", []string{"email", "openid", "profile", "email"}, []string{audience[0], audience[0]}, true},
		{"subset of scopes", "john", "grafana", []string{"openid", "profile"}, audience, false},
		{"superset of scopes", "john", "grafana", []string{"openid", "profile", "email", "groups"}, audience, false},
		{"no audience", "john", "grafana", scopes, nil, false},
		{"more audience", "john", "grafana", scopes, []string{"https://api.example.com", "https://other.example.com"}, false},
		{"other client", "john", "nextcloud", scopes, audience, false},
		{"other user", "jane", "grafana", scopes, audience, false},
		{"user prefix", "joh", "grafana", scopes, audience, false},
		{"empty user", "", "grafana", scopes, audience, false},
		{"empty client", "john", "", scopes, audience, false},
		// a scope that spells two others joined must not match them
		{"joined scopes", "john", "grafana", []string{"openidprofile", "email"}, audience, false},
	}
	for _, c := range cases {
		_, ok, err := s.Find(ctx, c.user, c.client, c.scopes, c.audience, now)
		if err != nil || ok != c.want {
			t.Errorf("%s: found %v (%v), want %v", c.name, ok, err, c.want)
		}
	}
	// nil and empty audience are the same set
	if _, err := s.Remember(ctx, "john", "grafana", []string{"openid"}, nil, week, t0); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Find(ctx, "john", "grafana", []string{"openid"}, []string{}, now); err != nil || !ok {
		t.Fatalf("empty audience: %v %v", ok, err)
	}
}

func TestDigestIsUnambiguous(t *testing.T) {
	type req struct {
		client      string
		scopes, aud []string
	}
	reqs := []req{
		{"a", []string{"b"}, nil},
		{"ab", nil, nil},
		{"a", nil, []string{"b"}},
		{"a", []string{"b", "c"}, nil},
		{"a", []string{"bc"}, nil},
		{"a", []string{"b"}, []string{"c"}},
		{"a", []string{""}, nil},
		{"a", nil, []string{""}},
		{"a", nil, nil},
	}
	seen := map[string]req{}
	for _, r := range reqs {
		d := digest(r.client, set(r.scopes), set(r.aud))
		if other, dup := seen[d]; dup {
			t.Fatalf("%+v and %+v share a digest", r, other)
		}
		seen[d] = r
	}
}

func TestExpiry(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	defer kv.Destruct()
	s := NewStore(kv)
	g, err := s.Remember(ctx, "john", "grafana", scopes, audience, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Find(ctx, "john", "grafana", scopes, audience, t0.Add(time.Hour-time.Second)); !ok {
		t.Fatal("not found just before expiry")
	}
	for _, at := range []time.Time{t0.Add(time.Hour), t0.Add(2 * time.Hour)} {
		if _, ok, err := s.Find(ctx, "john", "grafana", scopes, audience, at); err != nil || ok {
			t.Fatalf("found at %s, expiry %s: %v", at, g.ExpiresAt, err)
		}
		if list, err := s.List(ctx, "john", at); err != nil || len(list) != 0 {
			t.Fatalf("listed at %s: %+v %v", at, list, err)
		}
	}
	if _, err := s.Remember(ctx, "john", "grafana", scopes, audience, 0, t0); err == nil {
		t.Fatal("a zero lifetime was accepted")
	}

	// both keys go to the store with a time-to-live that outlasts ExpiresAt (Badger's expiry
	// rounds down to a second) by at most a second, so the store removes them after it; the
	// store's own tests show that it does
	ttls := &ttlRecorder{KV: kv}
	if _, err := NewStore(ttls).Remember(ctx, "jane", "grafana", scopes, audience, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	if len(ttls.ttls) != 2 {
		t.Fatalf("remembering wrote %d entries, want the grant and its match key", len(ttls.ttls))
	}
	for key, ttl := range ttls.ttls {
		if ttl <= time.Minute || ttl > time.Minute+time.Second {
			t.Fatalf("key %s written with TTL %s for a one-minute consent", key, ttl)
		}
	}
}

func TestRememberReplaces(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	defer kv.Destruct()
	s := NewStore(kv)
	first, err := s.Remember(ctx, "john", "grafana", scopes, audience, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Remember(ctx, "john", "grafana", []string{"profile", "email", "openid"}, audience, week, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if second.ID != first.ID || !second.ExpiresAt.Equal(t0.Add(time.Minute+week)) {
		t.Fatalf("replacement %+v of %+v", second, first)
	}
	list, err := s.List(ctx, "john", t0.Add(2*time.Hour))
	if err != nil || len(list) != 1 || list[0].ID != first.ID || !list[0].GrantedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("list after replacement: %+v %v", list, err)
	}
	// another scope set is another grant
	third, err := s.Remember(ctx, "john", "grafana", []string{"openid"}, audience, week, t0.Add(2*time.Minute))
	if err != nil || third.ID == first.ID {
		t.Fatalf("another scope set: %+v %v", third, err)
	}
}

func TestListNewestFirstAndIDs(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	defer kv.Destruct()
	s := NewStore(kv)
	ids := map[string]bool{}
	var want []string
	for i, client := range []string{"c1", "c2", "c3", "c4", "c5"} {
		g, err := s.Remember(ctx, "john", client, scopes, nil, week, t0.Add(time.Duration(i)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if ids[g.ID] {
			t.Fatalf("id %s given twice", g.ID)
		}
		ids[g.ID] = true
		want = append([]string{client}, want...)
	}
	list, err := s.List(ctx, "john", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range list {
		got = append(got, g.ClientID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if list, err := s.List(ctx, "nobody", t0); err != nil || len(list) != 0 {
		t.Fatalf("list of a user without grants: %+v %v", list, err)
	}
}

func TestWithdrawOnlyOwnGrants(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	defer kv.Destruct()
	s := NewStore(kv)
	johns, err := s.Remember(ctx, "john", "grafana", scopes, nil, week, t0)
	if err != nil {
		t.Fatal(err)
	}
	janes, err := s.Remember(ctx, "jane", "grafana", scopes, nil, week, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{janes.ID, "", "x", johns.ID + "A", "../../grant/" + johns.ID, "AAAAAAAAAAAAAAAAAAAAAA"} {
		if ok, err := s.Withdraw(ctx, "john", id); err != nil || ok {
			t.Fatalf("john withdrew %q: %v %v", id, ok, err)
		}
	}
	if _, ok, _ := s.Find(ctx, "jane", "grafana", scopes, nil, t0); !ok {
		t.Fatal("jane's grant went with john's withdrawal of its id")
	}
	if ok, err := s.Withdraw(ctx, "john", johns.ID); err != nil || !ok {
		t.Fatalf("john's own: %v %v", ok, err)
	}
	if _, ok, _ := s.Find(ctx, "jane", "grafana", scopes, nil, t0); !ok {
		t.Fatal("jane's grant went with john's")
	}
}

func TestUsernamesCannotReachEachOther(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	defer kv.Destruct()
	s := NewStore(kv)
	users := []string{"a", "a/b", "a/", "/a", "ab", "a/b/c", "YQ"}
	for _, u := range users {
		if _, err := s.Remember(ctx, u, "client", scopes, nil, week, t0); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range users {
		list, err := s.List(ctx, u, t0)
		if err != nil || len(list) != 1 || list[0].Username != u {
			t.Fatalf("List(%q) = %+v %v", u, list, err)
		}
	}
	if n, err := s.WithdrawAll(ctx, "a"); err != nil || n != 1 {
		t.Fatalf("WithdrawAll(a) = %d %v", n, err)
	}
	for _, u := range users[1:] {
		if _, ok, _ := s.Find(ctx, u, "client", scopes, nil, t0); !ok {
			t.Fatalf("WithdrawAll(a) removed %q's grant", u)
		}
	}
	if n, err := s.WithdrawAll(ctx, "a"); err != nil || n != 0 {
		t.Fatalf("second WithdrawAll(a) = %d %v", n, err)
	}
}

func TestWithdrawAll(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	defer kv.Destruct()
	s := NewStore(kv)
	for _, c := range []string{"c1", "c2", "c3"} {
		if _, err := s.Remember(ctx, "john", c, scopes, nil, week, t0); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.WithdrawAll(ctx, "john"); err != nil || n != 3 {
		t.Fatalf("WithdrawAll = %d %v", n, err)
	}
	for _, p := range []string{grantPrefix, matchPrefix} {
		if keys, _ := kv.Keys(ctx, []byte(p)); len(keys) != 0 {
			t.Fatalf("keys left under %s: %q", p, keys)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	defer kv.Destruct()
	s := NewStore(kv)
	const goroutines = 32
	var wg sync.WaitGroup
	start := make(chan struct{})
	ids := make([]string, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// every goroutine remembers the same request, and one of its own
			shared, err := s.Remember(ctx, "john", "shared", []string{"openid", "profile"}, nil, week, t0)
			if err != nil {
				t.Error(err)
				return
			}
			ids[g] = shared.ID
			own := fmt.Sprintf("client-%d", g)
			mine, err := s.Remember(ctx, "john", own, scopes, nil, week, t0)
			if err != nil {
				t.Error(err)
				return
			}
			if _, ok, err := s.Find(ctx, "john", own, scopes, nil, t0); err != nil || !ok {
				t.Errorf("find %s: %v %v", own, ok, err)
			}
			if _, err := s.List(ctx, "john", t0); err != nil {
				t.Error(err)
			}
			if g%2 == 0 {
				if ok, err := s.Withdraw(ctx, "john", mine.ID); err != nil || !ok {
					t.Errorf("withdraw %s: %v %v", own, ok, err)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("one request got two grants: %s and %s", ids[0], id)
		}
	}
	list, err := s.List(ctx, "john", t0)
	if err != nil || len(list) != 1+goroutines/2 {
		t.Fatalf("list: %d grants %v, want %d", len(list), err, 1+goroutines/2)
	}
}

func TestClosedStore(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	s := NewStore(kv)
	g, err := s.Remember(ctx, "john", "grafana", scopes, nil, week, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Destruct(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remember(ctx, "john", "grafana", scopes, nil, week, t0); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("remember: %v", err)
	}
	if _, _, err := s.Find(ctx, "john", "grafana", scopes, nil, t0); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("find: %v", err)
	}
	if _, err := s.List(ctx, "john", t0); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("list: %v", err)
	}
	if _, err := s.Withdraw(ctx, "john", g.ID); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("withdraw: %v", err)
	}
	if _, err := s.WithdrawAll(ctx, "john"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("withdraw all: %v", err)
	}
}

// ttlRecorder is the real store with a note of the time-to-live each written key was given.
type ttlRecorder struct {
	store.KV
	ttls map[string]time.Duration
}

func (r *ttlRecorder) PutSync(ctx context.Context, entries ...store.Entry) error {
	r.note(entries)
	return r.KV.PutSync(ctx, entries...)
}

func (r *ttlRecorder) Put(ctx context.Context, entries ...store.Entry) error {
	r.note(entries)
	return r.KV.Put(ctx, entries...)
}

func (r *ttlRecorder) note(entries []store.Entry) {
	if r.ttls == nil {
		r.ttls = map[string]time.Duration{}
	}
	for _, e := range entries {
		r.ttls[string(e.Key)] = e.TTL
	}
}
