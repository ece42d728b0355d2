package totp

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// t0 is the tests' clock: the middle of a 30-second step.
var t0 = time.Date(2026, 11, 23, 12, 0, 10, 0, time.UTC)

func openStore(t *testing.T, dir string) *store.Badger {
	t.Helper()
	db, err := store.Open(dir, store.Options{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newDevices(t *testing.T, cfg Config, kv store.KV) *Devices {
	t.Helper()
	sealer, err := NewSealer(bytes.Repeat([]byte("s"), 32))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDevices(cfg, kv, sealer)
	if err != nil {
		t.Fatal(err)
	}
	d.now = func() time.Time { return t0 }
	return d
}

// enrol enrols a device for user at t0 and returns its secret.
func enrol(t *testing.T, d *Devices, user string) string {
	ctx := t.Context()
	t.Helper()
	e, err := d.StartEnrolment(ctx, user, "browser-session-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.FinishEnrolment(ctx, user, "browser-session-1", code(t, d.Config(), e.Secret, t0), t0); err != nil {
		t.Fatal(err)
	}
	return e.Secret
}

// allValues is every value stored under mfa/.
func allValues(t *testing.T, kv store.KV) [][]byte {
	ctx := t.Context()
	t.Helper()
	keys, err := kv.Keys(ctx, []byte("mfa/"))
	if err != nil {
		t.Fatal(err)
	}
	var values [][]byte
	for _, k := range keys {
		v, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, k, v)
	}
	return values
}

func TestDevicesEnrolCheckReplay(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d := newDevices(t, Config{}, db)
	cfg := d.Config()

	if _, err := d.Info(ctx, "john"); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("info without a device: %v", err)
	}
	if err := d.Check(ctx, "john", "123456", t0); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("check without a device: %v", err)
	}

	e, err := d.StartEnrolment(ctx, "john", "k1")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range allValues(t, db) {
		if bytes.Contains(v, []byte(e.Secret)) {
			t.Fatal("the pending secret is stored in the clear")
		}
	}
	// a wrong code keeps the enrolment so that the user can try again
	wrong := "000000"
	if wrong == code(t, cfg, e.Secret, t0) {
		wrong = "111111"
	}
	if err := d.FinishEnrolment(ctx, "john", "k1", wrong, t0); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("finish with a wrong code: %v", err)
	}
	if _, err := d.Info(ctx, "john"); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("a device after a wrong enrolment code: %v", err)
	}
	enrolCode := code(t, cfg, e.Secret, t0)
	if err := d.FinishEnrolment(ctx, "john", "k1", enrolCode, t0); err != nil {
		t.Fatalf("finish with the right code: %v", err)
	}
	// the pending enrolment is gone
	if err := d.FinishEnrolment(ctx, "john", "k1", enrolCode, t0); !errors.Is(err, ErrNoEnrolment) {
		t.Fatalf("finishing twice: %v", err)
	}

	info, err := d.Info(ctx, "john")
	if err != nil {
		t.Fatal(err)
	}
	want := DeviceInfo{Created: t0, Algorithm: "SHA1", Digits: 6, Period: 30 * time.Second}
	if *info != want {
		t.Fatalf("info %+v, want %+v", *info, want)
	}
	if strings.Contains(fmt.Sprintf("%+v", *info), e.Secret) {
		t.Fatal("info shows the secret")
	}

	// the enrolment code cannot be used to sign in
	if err := d.Check(ctx, "john", enrolCode, t0.Add(5*time.Second)); !errors.Is(err, ErrReplayed) {
		t.Fatalf("the enrolment code used to sign in: %v", err)
	}
	next := t0.Add(30 * time.Second)
	if err := d.Check(ctx, "john", code(t, cfg, e.Secret, next), next); err != nil {
		t.Fatalf("the next code: %v", err)
	}
	if err := d.Check(ctx, "john", code(t, cfg, e.Secret, next), next.Add(time.Second)); !errors.Is(err, ErrReplayed) {
		t.Fatalf("the same code again: %v", err)
	}
	later := next.Add(time.Minute)
	bad := "999999"
	if bad == code(t, cfg, e.Secret, later) {
		bad = "888888"
	}
	if err := d.Check(ctx, "john", bad, later); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("a wrong code: %v", err)
	}
	if info, _ := d.Info(ctx, "john"); !info.LastUsed.Equal(next) {
		t.Fatalf("last used %v, want %v", info.LastUsed, next)
	}
	for _, v := range allValues(t, db) {
		if bytes.Contains(v, []byte(e.Secret)) {
			t.Fatal("the device's secret is stored in the clear")
		}
	}
	// a new enrolment replaces the device
	e2, err := d.StartEnrolment(ctx, "john", "k2")
	if err != nil {
		t.Fatal(err)
	}
	// until it is finished, the old device works
	if err := d.Check(ctx, "john", code(t, cfg, e.Secret, later), later); err != nil {
		t.Fatalf("the old device during a new enrolment: %v", err)
	}
	much := later.Add(time.Minute)
	if err := d.FinishEnrolment(ctx, "john", "k2", code(t, cfg, e2.Secret, much), much); err != nil {
		t.Fatal(err)
	}
	even := much.Add(time.Minute)
	if err := d.Check(ctx, "john", code(t, cfg, e.Secret, even), even); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("the replaced device's code: %v", err)
	}
	if err := d.Check(ctx, "john", code(t, cfg, e2.Secret, even), even); err != nil {
		t.Fatalf("the new device's code: %v", err)
	}
}

func TestDevicesEnrolmentBoundToUserAndKeyAndExpires(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d := newDevices(t, Config{}, db)
	cfg := d.Config()

	e, err := d.StartEnrolment(ctx, "john", "k1")
	if err != nil {
		t.Fatal(err)
	}
	c := code(t, cfg, e.Secret, t0)
	if err := d.FinishEnrolment(ctx, "john", "k2", c, t0); !errors.Is(err, ErrNoEnrolment) {
		t.Fatalf("another key: %v", err)
	}
	if err := d.FinishEnrolment(ctx, "jane", "k1", c, t0); !errors.Is(err, ErrNoEnrolment) {
		t.Fatalf("another user: %v", err)
	}
	if _, err := d.StartEnrolment(ctx, "", "k1"); err == nil {
		t.Fatal("an empty username must be refused")
	}
	if _, err := d.StartEnrolment(ctx, "john", ""); err == nil {
		t.Fatal("an empty enrolment key must be refused")
	}

	// ten minutes later the enrolment has expired, even with the code of that moment
	late := t0.Add(EnrolmentTTL)
	if err := d.FinishEnrolment(ctx, "john", "k1", code(t, cfg, e.Secret, late), late); !errors.Is(err, ErrNoEnrolment) {
		t.Fatalf("an expired enrolment: %v", err)
	}
	// and it was removed
	if err := d.FinishEnrolment(ctx, "john", "k1", c, t0); !errors.Is(err, ErrNoEnrolment) {
		t.Fatalf("an expired enrolment, then in time: %v", err)
	}
	if _, err := d.Info(ctx, "john"); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("a device from an expired enrolment: %v", err)
	}

	// an enrolment nobody finishes stays pending until the store's TTL removes it
	if _, err := d.StartEnrolment(ctx, "john", "k3"); err != nil {
		t.Fatal(err)
	}
	keys, err := db.Keys(ctx, []byte(pendingPrefix))
	if err != nil || len(keys) != 1 {
		t.Fatalf("pending keys %q %v", keys, err)
	}
}

func TestDevicesUseTheirOwnSettings(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	old := newDevices(t, Config{Algorithm: "SHA256", Digits: 8, Period: 60 * time.Second}, db)
	secret := enrol(t, old, "john")
	oldCfg := old.Config()

	// the configuration changes; the enrolled device keeps its settings
	d := newDevices(t, Config{}, db)
	info, err := d.Info(ctx, "john")
	if err != nil || info.Algorithm != "SHA256" || info.Digits != 8 || info.Period != time.Minute {
		t.Fatalf("info %+v %v", info, err)
	}
	now := t0.Add(2 * time.Minute)
	if err := d.Check(ctx, "john", code(t, oldCfg, secret, now), now); err != nil {
		t.Fatalf("a code of the enrolled settings: %v", err)
	}
	now = now.Add(time.Minute)
	if err := d.Check(ctx, "john", code(t, d.Config(), secret, now), now); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("a code of the new settings: %v", err)
	}
}

func TestDevicesRecordDoesNotMoveToAnotherUser(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d := newDevices(t, Config{}, db)
	secret := enrol(t, d, "john")

	raw, err := db.Get(ctx, deviceKey("john"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Put(ctx, store.Entry{Key: deviceKey("jane"), Value: raw}); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Minute)
	err = d.Check(ctx, "jane", code(t, d.Config(), secret, now), now)
	if err == nil || errors.Is(err, ErrWrongCode) || errors.Is(err, ErrNoDevice) {
		t.Fatalf("john's device under jane's name: %v", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatal("the error shows the secret")
	}
	// john's device still works
	if err := d.Check(ctx, "john", code(t, d.Config(), secret, now), now); err != nil {
		t.Fatal(err)
	}
}

func TestDevicesUsernamesDoNotCollide(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d := newDevices(t, Config{}, db)
	enrol(t, d, "a/b")
	for _, other := range []string{"a", "a/", "a/b/c", "b"} {
		if _, err := d.Info(ctx, other); !errors.Is(err, ErrNoDevice) {
			t.Errorf("%q sees the device of a/b: %v", other, err)
		}
	}
	if _, err := d.Info(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
}

func TestDevicesRemove(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d := newDevices(t, Config{}, db)
	secret := enrol(t, d, "john")
	if err := d.Remove(ctx, "john"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Info(ctx, "john"); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("info after remove: %v", err)
	}
	now := t0.Add(time.Minute)
	if err := d.Check(ctx, "john", code(t, d.Config(), secret, now), now); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("check after remove: %v", err)
	}
	if err := d.Remove(ctx, "john"); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("removing twice: %v", err)
	}
}

func TestDevicesPersist(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	db := openStore(t, dir)
	d := newDevices(t, Config{}, db)
	secret := enrol(t, d, "john")
	now := t0.Add(time.Minute)
	used := code(t, d.Config(), secret, now)
	if err := d.Check(ctx, "john", used, now); err != nil {
		t.Fatal(err)
	}
	if err := db.Destruct(); err != nil {
		t.Fatal(err)
	}

	db = openStore(t, dir)
	defer db.Destruct()
	d = newDevices(t, Config{}, db)
	info, err := d.Info(ctx, "john")
	if err != nil || !info.Created.Equal(t0) || !info.LastUsed.Equal(now) {
		t.Fatalf("after reopening: %+v %v", info, err)
	}
	// the last used step persisted too
	if err := d.Check(ctx, "john", used, now); !errors.Is(err, ErrReplayed) {
		t.Fatalf("a used code after reopening: %v", err)
	}
	later := now.Add(30 * time.Second)
	if err := d.Check(ctx, "john", code(t, d.Config(), secret, later), later); err != nil {
		t.Fatal(err)
	}
}

func TestDevicesConcurrentChecksAcceptACodeOnce(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d := newDevices(t, Config{}, db)
	secret := enrol(t, d, "john")
	now := t0.Add(time.Minute)
	c := code(t, d.Config(), secret, now)

	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = d.Check(ctx, "john", c, now)
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrReplayed):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("the same code was accepted %d times, want once", ok)
	}
}

func TestNewDevicesChecks(t *testing.T) {
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	sealer, _ := NewSealer(bytes.Repeat([]byte("s"), 32))
	if _, err := NewDevices(Config{Digits: 7}, db, sealer); err == nil || !strings.Contains(err.Error(), "digits") {
		t.Fatalf("a bad config: %v", err)
	}
	if _, err := NewDevices(Config{}, nil, sealer); err == nil {
		t.Fatal("no store must be refused")
	}
	if _, err := NewDevices(Config{}, db, nil); err == nil {
		t.Fatal("no sealer must be refused")
	}
	d, err := NewDevices(Config{}, db, sealer)
	if err != nil {
		t.Fatal(err)
	}
	c := d.Config()
	*c.Skew = 2
	if *d.Config().Skew != 1 {
		t.Fatal("Config shares its skew with the caller")
	}
}
