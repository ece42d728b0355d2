package totp

import (
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// secretOf reads the secret of an otpauth:// URI, as an app does.
func secretOf(t *testing.T, uri string) string {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" {
		t.Fatalf("not an otpauth://totp URI: %q (%v)", uri, err)
	}
	return u.Query().Get("secret")
}

// A provisioned device is a device at once: its URI carries the configured settings, its codes
// sign in (once), a second provision is refused unless it replaces, and a replaced device's codes
// stop working.
func TestProvision(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d := newDevices(t, Config{Issuer: "auth.example.com", Algorithm: "SHA256", Digits: 8, Period: 60 * time.Second}, db)
	cfg := d.Config()

	e, err := d.Provision(ctx, "john", false)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := url.Parse(e.URI)
	for k, want := range map[string]string{"issuer": "auth.example.com", "algorithm": "SHA256", "digits": "8", "period": "60"} {
		if got := q.Query().Get(k); got != want {
			t.Errorf("URI %s = %q, want %q", k, got, want)
		}
	}
	if !strings.HasPrefix(q.Path, "/auth.example.com:john") {
		t.Errorf("URI label %q, want auth.example.com:john", q.Path)
	}
	secret := secretOf(t, e.URI)
	if secret != e.Secret {
		t.Fatalf("the URI's secret %q is not the device's %q", secret, e.Secret)
	}
	info, err := d.Info(ctx, "john")
	if err != nil || info.Algorithm != "SHA256" || info.Digits != 8 || info.Period != time.Minute || !info.Created.Equal(t0) {
		t.Fatalf("Info after Provision: %+v %v", info, err)
	}
	c := code(t, cfg, secret, t0)
	if err := d.Check(ctx, "john", c, t0); err != nil {
		t.Fatalf("the provisioned device's code: %v", err)
	}
	if err := d.Check(ctx, "john", c, t0); !errors.Is(err, ErrReplayed) {
		t.Fatalf("the same code again: %v, want ErrReplayed", err)
	}
	for _, v := range allValues(t, db) {
		if strings.Contains(string(v), secret) {
			t.Fatal("the secret is stored in clear")
		}
	}

	// one device per user: a second provision is refused and leaves the first one working
	if _, err := d.Provision(ctx, "john", false); !errors.Is(err, ErrDeviceExists) {
		t.Fatalf("a second provision: %v, want ErrDeviceExists", err)
	}
	later := t0.Add(time.Minute)
	if err := d.Check(ctx, "john", code(t, cfg, secret, later), later); err != nil {
		t.Fatalf("the first device after a refused provision: %v", err)
	}
	// a device enrolled at the portal counts as well
	enrol(t, d, "mary")
	if _, err := d.Provision(ctx, "mary", false); !errors.Is(err, ErrDeviceExists) {
		t.Fatalf("a provision over a portal-enrolled device: %v, want ErrDeviceExists", err)
	}

	// replace: the new secret works, the old one no longer does
	e2, err := d.Provision(ctx, "john", true)
	if err != nil {
		t.Fatal(err)
	}
	if e2.Secret == secret {
		t.Fatal("replace kept the secret")
	}
	next := t0.Add(2 * time.Minute)
	if err := d.Check(ctx, "john", code(t, cfg, secret, next), next); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("the replaced device's code: %v, want ErrWrongCode", err)
	}
	if err := d.Check(ctx, "john", code(t, cfg, e2.Secret, next), next); err != nil {
		t.Fatalf("the new device's code: %v", err)
	}
	if _, err := d.Provision(ctx, "", false); err == nil {
		t.Fatal("an empty username was provisioned")
	}
}

// Without replace, provisions racing for one user on two nodes sharing a PostgreSQL database
// store one device: the others are refused, and the stored device is the one whose URI was
// answered.
func TestProvisionRacesAcrossNodes(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Database(t)
	node := func() *Devices {
		kv, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kv.Destruct() })
		return newDevices(t, Config{}, kv)
	}
	nodes := []*Devices{node(), node()}
	const racers = 8
	for round := range 5 {
		user := "u" + string(rune('a'+round))
		start := make(chan struct{})
		secrets := make([]string, racers)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				e, err := nodes[i%2].Provision(t.Context(), user, false)
				errs[i] = err
				if err == nil {
					secrets[i] = e.Secret
				}
			}()
		}
		close(start)
		wg.Wait()
		var won string
		for i, err := range errs {
			switch {
			case err == nil && won != "":
				t.Fatalf("round %d: two provisions stored a device", round)
			case err == nil:
				won = secrets[i]
			case !errors.Is(err, ErrDeviceExists):
				t.Fatalf("round %d: %v, want ErrDeviceExists", round, err)
			}
		}
		if won == "" {
			t.Fatalf("round %d: no provision stored a device", round)
		}
		if err := nodes[1].Check(t.Context(), user, code(t, nodes[1].Config(), won, t0), t0); err != nil {
			t.Fatalf("round %d: the answered device's code: %v", round, err)
		}
	}
}
