package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Each lists every live key with its value and expiry, and no deleted or expired one.
func TestEachListsLiveKeysWithExpiry(t *testing.T) {
	db, err := Open(t.TempDir(), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Destruct()
	ctx := t.Context()
	before := time.Now()
	if err := db.Put(ctx,
		Entry{Key: []byte("meta/hmac_secret"), Value: []byte("secret")},
		Entry{Key: []byte("tok/at/1"), Value: []byte("a"), TTL: time.Hour},
		Entry{Key: []byte("tok/at/2"), Value: []byte("b"), TTL: time.Hour},
		Entry{Key: []byte("tok/at/short"), Value: []byte("c"), TTL: time.Second},
		Entry{Key: []byte("sess/x"), Value: bytes.Repeat([]byte("v"), 2<<20), TTL: 30 * time.Minute}, // in the value log
	); err != nil {
		t.Fatal(err)
	}
	if err := db.Delete(ctx, []byte("tok/at/2")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond) // tok/at/short expires (Badger counts whole seconds)

	got := map[string]time.Time{}
	values := map[string][]byte{}
	if err := db.Each(ctx, func(k, v []byte, exp time.Time) error {
		got[string(k)] = exp
		values[string(k)] = v
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("Each listed %v, want meta/hmac_secret, tok/at/1 and sess/x", got)
	}
	if exp, ok := got["meta/hmac_secret"]; !ok || !exp.IsZero() || string(values["meta/hmac_secret"]) != "secret" {
		t.Errorf("a key without TTL: expiry %v, value %q", exp, values["meta/hmac_secret"])
	}
	for k, ttl := range map[string]time.Duration{"tok/at/1": time.Hour, "sess/x": 30 * time.Minute} {
		exp := got[k]
		if exp.Before(before.Add(ttl).Add(-time.Second)) || exp.After(time.Now().Add(ttl).Add(time.Second)) {
			t.Errorf("%s expires at %v, want about %v from the write", k, exp, ttl)
		}
	}
	if len(values["sess/x"]) != 2<<20 {
		t.Errorf("a value-log value came back with %d bytes", len(values["sess/x"]))
	}

	stop := errors.New("stop")
	n := 0
	if err := db.Each(ctx, func([]byte, []byte, time.Time) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("fn's error must stop Each and come back: %v after %d calls", err, n)
	}
}

// OpenReadOnly reads a store another process left, refuses one that is open for writing, and
// does not make a store where there is none.
func TestOpenReadOnly(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := db.Put(t.Context(), Entry{Key: fmt.Appendf(nil, "tok/at/%03d", i), Value: []byte("v"), TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	if ro, err := OpenReadOnly(dir, nil); !errors.Is(err, ErrLocked) {
		if ro != nil {
			ro.Destruct()
		}
		t.Fatalf("OpenReadOnly of a store open for writing: %v, want ErrLocked", err)
	}

	// the directory as a killed process leaves it: copied while the store is open, its
	// write-ahead log not truncated
	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	if err := db.Destruct(); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]string{"closed cleanly": dir, "killed": crashed} {
		ro, err := OpenReadOnly(d, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n := 0
		if err := ro.Each(t.Context(), func([]byte, []byte, time.Time) error { n++; return nil }); err != nil || n != 100 {
			t.Errorf("%s: Each saw %d keys (%v), want 100", name, n, err)
		}
		if err := ro.Destruct(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	missing := filepath.Join(t.TempDir(), "nothing-here")
	if ro, err := OpenReadOnly(missing, nil); err == nil {
		ro.Destruct()
		t.Fatal("OpenReadOnly of a missing directory must fail")
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenReadOnly created %s: %v", missing, err)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
