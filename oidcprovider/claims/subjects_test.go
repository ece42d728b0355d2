package claims

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"

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

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestSubjectIsStableAndPersistent(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	kv := openStore(t, dir)
	s := NewSubjects(kv)
	sub, err := s.Subject(ctx, "john", "")
	if err != nil {
		t.Fatal(err)
	}
	if !uuidV4.MatchString(sub) {
		t.Fatalf("subject %q is not a canonical UUIDv4", sub)
	}
	if again, err := s.Subject(ctx, "john", ""); err != nil || again != sub {
		t.Fatalf("second call: %q %v, want %q", again, err, sub)
	}
	// a new Subjects over the same store (a config reload) reads the same one
	if again, err := NewSubjects(kv).Subject(ctx, "john", ""); err != nil || again != sub {
		t.Fatalf("another Subjects: %q %v, want %q", again, err, sub)
	}
	pairwise, err := s.Subject(ctx, "john", "https://rp.example.com/sector.json")
	if err != nil || pairwise == sub || !uuidV4.MatchString(pairwise) {
		t.Fatalf("pairwise subject %q %v (public %q)", pairwise, err, sub)
	}
	other, err := s.Subject(ctx, "jane", "")
	if err != nil || other == sub {
		t.Fatalf("another user's subject %q %v", other, err)
	}
	if err := kv.Destruct(); err != nil {
		t.Fatal(err)
	}

	kv = openStore(t, dir)
	defer kv.Destruct()
	s = NewSubjects(kv)
	if again, err := s.Subject(ctx, "john", ""); err != nil || again != sub {
		t.Fatalf("after reopening: %q %v, want %q", again, err, sub)
	}
	if again, err := s.Subject(ctx, "john", "https://rp.example.com/sector.json"); err != nil || again != pairwise {
		t.Fatalf("pairwise after reopening: %q %v, want %q", again, err, pairwise)
	}
}

func TestSubjectKeysCannotCollide(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	defer kv.Destruct()
	s := NewSubjects(kv)
	pairs := [][2]string{ // (username, sector)
		{"c", "a/b"}, {"b/c", "a"}, {"a/b", "c"}, {"a", "b/c"},
		{"a", ""}, {"", "a"}, {"a/", ""}, {"/a", ""}, {"a", "/"}, {"a//", ""},
	}
	seen := map[string][2]string{}
	keys := map[string][2]string{}
	for _, p := range pairs {
		k := string(subjectKey(p[0], p[1]))
		if q, dup := keys[k]; dup {
			t.Fatalf("%q and %q share the key %q", p, q, k)
		}
		keys[k] = p
		if p[0] == "" {
			if _, err := s.Subject(ctx, p[0], p[1]); err == nil {
				t.Fatal("an empty username got a subject")
			}
			continue
		}
		sub, err := s.Subject(ctx, p[0], p[1])
		if err != nil {
			t.Fatal(err)
		}
		if q, dup := seen[sub]; dup {
			t.Fatalf("%q and %q got the same subject %s", p, q, sub)
		}
		seen[sub] = p
		user, sector, ok, err := s.Lookup(ctx, sub)
		if err != nil || !ok || user != p[0] || sector != p[1] {
			t.Fatalf("lookup of %q's subject: %q %q %v %v", p, user, sector, ok, err)
		}
	}
}

func TestUsernameReverseLookup(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	defer kv.Destruct()
	s := NewSubjects(kv)
	sub, err := s.Subject(ctx, "john", "")
	if err != nil {
		t.Fatal(err)
	}
	// a fresh Subjects (nothing cached) finds it in the store
	if name, ok, err := NewSubjects(kv).Username(ctx, sub); err != nil || !ok || name != "john" {
		t.Fatalf("Username(%s) = %q %v %v", sub, name, ok, err)
	}
	pairwise, err := s.Subject(ctx, "john", "https://sector.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if name, ok, err := s.Username(ctx, pairwise); err != nil || ok || name != "" {
		t.Fatalf("a pairwise subject resolved as public: %q %v %v", name, ok, err)
	}
	if name, sector, ok, err := s.Lookup(ctx, pairwise); err != nil || !ok || name != "john" || sector != "https://sector.example.com" {
		t.Fatalf("Lookup(pairwise) = %q %q %v %v", name, sector, ok, err)
	}
	for _, bad := range []string{"", "john", "00000000-0000-4000-8000-000000000000", "../sub/id/x", sub + "x", "E" + sub[1:]} {
		if name, ok, err := s.Username(ctx, bad); err != nil || ok {
			t.Fatalf("Username(%q) = %q %v %v", bad, name, ok, err)
		}
	}
}

func TestSubjectConcurrentFirstUse(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	defer kv.Destruct()
	// several Subjects over one store, as during a config reload
	instances := []*Subjects{NewSubjects(kv), NewSubjects(kv), NewSubjects(kv)}
	const goroutines = 64
	users := []string{"alice", "bob", "carol"}
	got := make([][]string, goroutines)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			s := instances[g%len(instances)]
			for _, u := range users {
				sub, err := s.Subject(ctx, u, "")
				if err != nil {
					t.Error(err)
					return
				}
				got[g] = append(got[g], sub)
			}
		}()
	}
	close(start)
	wg.Wait()
	for g := 1; g < goroutines; g++ {
		if fmt.Sprint(got[g]) != fmt.Sprint(got[0]) {
			t.Fatalf("goroutine %d got %v, goroutine 0 got %v", g, got[g], got[0])
		}
	}
	// exactly one forward and one reverse key per user
	for _, prefix := range []string{subjectPrefix, reversePrefix} {
		keys, err := kv.Keys(ctx, []byte(prefix))
		if err != nil || len(keys) != len(users) {
			t.Fatalf("%s keys: %d %v, want %d", prefix, len(keys), err, len(users))
		}
	}
}

// syncSpy records the keys of every PutSync, to check what Subject makes durable.
type syncSpy struct {
	store.KV
	mu     sync.Mutex
	synced map[string][]byte
	fail   bool
}

func (s *syncSpy) PutSync(ctx context.Context, entries ...store.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("disk full")
	}
	for _, e := range entries {
		s.synced[string(e.Key)] = e.Value
	}
	return s.KV.PutSync(ctx, entries...)
}

func TestSubjectIsSyncedBeforeItIsReturned(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	defer kv.Destruct()
	spy := &syncSpy{KV: kv, synced: map[string][]byte{}}
	s := NewSubjects(spy)
	sub, err := s.Subject(ctx, "john", "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(spy.synced[string(subjectKey("john", ""))], []byte(sub)) {
		t.Fatal("the subject was returned before a synced write of it")
	}
	if _, ok := spy.synced[string(reverseKey(sub))]; !ok {
		t.Fatal("the reverse key was not in the synced write")
	}

	// a subject found in the store, written without a sync (a crash after the create, or a
	// concurrent creator not yet synced), is synced again before this Subjects returns it
	if err := kv.Put(ctx, store.Entry{Key: subjectKey("jane", ""), Value: []byte("7f1c6a4e-2b0d-4c7e-9a55-0c1d2e3f4a5b")}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Subject(ctx, "jane", "")
	if err != nil || got != "7f1c6a4e-2b0d-4c7e-9a55-0c1d2e3f4a5b" {
		t.Fatalf("existing subject: %q %v", got, err)
	}
	if _, ok := spy.synced[string(reverseKey(got))]; !ok {
		t.Fatal("an unsynced stored subject was returned without a synced write")
	}
	if name, ok, err := s.Username(ctx, got); err != nil || !ok || name != "jane" {
		t.Fatalf("reverse key not restored: %q %v %v", name, ok, err)
	}

	// a failed sync returns an error, never the subject; the next call returns the same one
	spy.fail = true
	if sub, err := NewSubjects(spy).Subject(ctx, "carol", ""); err == nil {
		t.Fatalf("a failed sync returned %q", sub)
	}
	spy.fail = false
	first, err := s.Subject(ctx, "carol", "")
	if err != nil {
		t.Fatal(err)
	}
	if stored, _ := kv.Get(ctx, subjectKey("carol", "")); string(stored) != first {
		t.Fatalf("stored %q, returned %q", stored, first)
	}
}

func TestSubjectRejectsCorruptValue(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	defer kv.Destruct()
	if err := kv.Put(ctx, store.Entry{Key: subjectKey("john", ""), Value: []byte("not-a-uuid")}); err != nil {
		t.Fatal(err)
	}
	if sub, err := NewSubjects(kv).Subject(ctx, "john", ""); err == nil {
		t.Fatalf("a corrupt stored subject was returned: %q", sub)
	}
}

func TestSubjectClosedStore(t *testing.T) {
	ctx := t.Context()
	kv := openStore(t, t.TempDir())
	s := NewSubjects(kv)
	if err := kv.Destruct(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Subject(ctx, "john", ""); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("closed store: %v, want ErrClosed wrapped", err)
	}
	if _, _, err := s.Username(ctx, "7f1c6a4e-2b0d-4c7e-9a55-0c1d2e3f4a5b"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("closed store lookup: %v, want ErrClosed wrapped", err)
	}
}
