package clients

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-crypt/crypt/algorithm"
	"github.com/ory/fosite"

	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
)

const seedDigest = "$pbkdf2-sha512$310000$c8p78n7pUMln0jzvd4aK4Q$JNRBzwAo0ek5qKn50cFzzvE9RXV88h1wJn5KGiHrD0YKtZaR/nCb2CJPOsKaPK0hjf.9yHxzQGZziziccp6Yng"

func TestSeedDigestVerifies(t *testing.T) {
	d, plain, err := DecodeSecret(seedDigest)
	if err != nil || plain {
		t.Fatal(err, plain)
	}
	if !d.Match("insecure_secret") || d.Match("insecure_secreT") {
		t.Fatal("the seed's pbkdf2-sha512 digest must verify insecure_secret and nothing else")
	}
	d, plain, err = DecodeSecret("bare")
	if err != nil || !plain || !d.Match("bare") {
		t.Fatal("a bare secret is plaintext", err)
	}
}

// countingDigest counts and slows digest checks, and records how many ran at once.
type countingDigest struct {
	algorithm.Digest
	runs, running, peak *atomic.Int32
}

func (d countingDigest) Match(s string) bool {
	d.runs.Add(1)
	n := d.running.Add(1)
	for {
		p := d.peak.Load()
		if n <= p || d.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	d.running.Add(-1)
	return d.Digest.Match(s)
}

type fixture struct {
	t    *testing.T
	auth *Authenticator
	// runs counts the clients' digest checks, dummyRuns the unknown-client one; running and peak
	// count both.
	runs, dummyRuns, running, peak atomic.Int32
}

// newFixture registers "kuma" (secret "good", client_secret_basic) and "poster"
// (client_secret_post), with every digest check, the unknown-client one included, counted.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t}
	registry := map[string]*Client{}
	for _, cfg := range []Config{
		{ID: "kuma", Secret: "$plaintext$good", Scopes: []string{ScopeBearerAuthz}, Audience: []string{"https://secure.example.com/"}, GrantTypes: []string{GrantClientCredentials}},
		{ID: "poster", Secret: "$plaintext$post", GrantTypes: []string{GrantClientCredentials}, TokenEndpointAuthMethod: AuthMethodPost},
	} {
		c, err := New(cfg, Lifespans{})
		if err != nil {
			t.Fatal(err)
		}
		c.digest = countingDigest{c.digest, &f.runs, &f.running, &f.peak}
		registry[c.ID()] = c
	}
	old := unknownClientDigest
	unknownClientDigest = countingDigest{mustDigest("$plaintext$never"), &f.dummyRuns, &f.running, &f.peak}
	t.Cleanup(func() { unknownClientDigest = old })
	f.auth = &Authenticator{
		Lookup:  func(id string) (*Client, bool) { c, ok := registry[id]; return c, ok },
		Secrets: digest.NewCache(64, time.Hour),
		Limits:  NewLimits(),
	}
	return f
}

func (f *fixture) basic(id, secret, ip string) error {
	f.t.Helper()
	r := httptest.NewRequest("POST", "https://auth.example.com/api/oidc/token", nil)
	r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	_, err := f.auth.Authenticate(context.Background(), r, url.Values{}, ip)
	return err
}

func (f *fixture) post(id, secret, ip string) error {
	r := httptest.NewRequest("POST", "https://auth.example.com/api/oidc/token", nil)
	_, err := f.auth.Authenticate(context.Background(), r, url.Values{"client_id": {id}, "client_secret": {secret}}, ip)
	return err
}

// Concurrent wrong secrets from one address must not all get a digest check: the limit is taken
// before the check (defect: 40 concurrent guesses ran 40 pbkdf2 checks), and no more checks run at
// once than there are digest slots.
func TestConcurrentGuessesAreLimitedBeforeTheDigest(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := f.basic("kuma", fmt.Sprint("guess-", i), "192.0.2.1"); err == nil {
				t.Error("a wrong secret was accepted")
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := f.runs.Load(); n != pairBurst {
		t.Fatalf("%d digest checks for 40 concurrent guesses from one address, want %d", n, pairBurst)
	}
	if p := f.peak.Load(); int(p) > digest.Slots() {
		t.Fatalf("%d digest checks ran at once, cap is %d", p, digest.Slots())
	}
}

// A guesser from one address cannot lock the client out of another address, even with no
// remembered secret (after a restart), and each address's own limit holds.
func TestGuesserCannotLockAClientOut(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 100; i++ {
		_ = f.basic("kuma", "guess", "192.0.2.66")
	}
	if err := f.basic("kuma", "good", "192.0.2.66"); err == nil {
		t.Fatal("the guessing address must be throttled, even with the right secret")
	}
	if err := f.basic("kuma", "good", "198.51.100.7"); err != nil {
		t.Fatalf("the real client from another address was refused: %v", err)
	}
	// restart: the remembered secret is gone, the limits too
	f.auth.Secrets = digest.NewCache(64, time.Hour)
	for i := 0; i < 100; i++ {
		_ = f.basic("kuma", "guess", "192.0.2.66")
	}
	if err := f.basic("kuma", "good", "198.51.100.7"); err != nil {
		t.Fatalf("after a restart the real client was refused: %v", err)
	}
	// many addresses in one IPv6 /64 share one address limit, across client ids
	for i := 0; i < 30; i++ {
		_ = f.basic(fmt.Sprint("ghost", i), "guess", fmt.Sprintf("2001:db8::%x", i+1))
	}
	if err := f.post("poster", "post", "2001:db8::ffff"); err == nil {
		t.Fatal("an IPv6 /64 must share one address limit")
	}
	if err := f.post("poster", "post", "2001:db8:0:1::1"); err != nil {
		t.Fatalf("another /64 has its own limit: %v", err)
	}
}

// A throttled address is refused everything, a remembered right secret included, so the cache
// is no oracle for a guesser (attack: 700 guesses a second against a remembered secret); the
// client at another address keeps its remembered secret, without a digest check.
func TestThrottledAddressGetsNoCacheAnswers(t *testing.T) {
	f := newFixture(t)
	if err := f.basic("kuma", "good", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		_ = f.basic("kuma", fmt.Sprint("guess-", i), "192.0.2.66")
	}
	before := f.runs.Load() + f.dummyRuns.Load()
	if err := f.basic("kuma", "good", "192.0.2.66"); err == nil {
		t.Fatal("a throttled address was told the remembered secret is right")
	}
	if err := f.basic("kuma", "good", "192.0.2.1"); err != nil {
		t.Fatalf("the monitor's remembered secret was refused at its own address: %v", err)
	}
	if f.runs.Load()+f.dummyRuns.Load() != before {
		t.Fatal("neither answer may cost a digest check")
	}
}

// An unknown client, a known client with the wrong method and a wrong (plaintext) secret get the
// same answer at the same cost (the unknown client's digest check, once), so neither lists clients
// nor their settings.
func TestSameAnswerForUnknownClientsAndWrongMethods(t *testing.T) {
	f := newFixture(t)
	attempts := map[string]func() error{
		"wrong secret":            func() error { return f.basic("kuma", "bad", "192.0.2.1") },
		"unknown client":          func() error { return f.basic("ghost", "bad", "192.0.2.2") },
		"post for a basic client": func() error { return f.post("kuma", "good", "192.0.2.3") },
		"basic for a post client": func() error { return f.basic("poster", "post", "192.0.2.4") },
		"none for a basic client": func() error { return f.post("kuma", "", "192.0.2.5") },
	}
	var want string
	for name, attempt := range attempts {
		before := f.dummyRuns.Load()
		err := attempt()
		rfc := fosite.ErrorToRFC6749Error(err)
		got := rfc.ErrorField + ": " + rfc.GetDescription()
		if rfc.ErrorField != "invalid_client" || strings.Contains(got, "client_secret") || strings.Contains(got, "registered") {
			t.Fatalf("%s: %q", name, got)
		}
		if want == "" {
			want = got
		} else if got != want {
			t.Errorf("%s: answer %q differs from %q", name, got, want)
		}
		if n := f.dummyRuns.Load() - before; n != 1 {
			t.Errorf("%s: the unknown-client digest ran %d times, want 1", name, n)
		}
	}
}
