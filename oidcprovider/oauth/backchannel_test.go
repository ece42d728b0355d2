package oauth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
	"github.com/portcullis-auth/portcullis/oidcprovider/keys"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// receiver is a back-channel logout endpoint: it records each logout_token it is sent, and
// answers with the status its answer function gives (204 by default).
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	tokens []string
	at     []time.Time
	answer func(n int) int // n counts the requests, from 1
	delay  time.Duration
	// location is sent as Location, when set
	location string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "want a form POST", http.StatusBadRequest)
			return
		}
		_ = req.ParseForm()
		time.Sleep(r.delay)
		r.mu.Lock()
		r.tokens = append(r.tokens, req.PostForm.Get("logout_token"))
		r.at = append(r.at, time.Now())
		n := len(r.tokens)
		answer := r.answer
		r.mu.Unlock()
		status := http.StatusNoContent
		if answer != nil {
			status = answer(n)
		}
		if r.location != "" {
			w.Header().Set("Location", r.location)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() ([]string, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.tokens...), append([]time.Time(nil), r.at...)
}

// waitFor polls cond for up to limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bclNode is a provider on kv with the clients rp1 and rp2 (back-channel logout to uri, rp2's
// ID tokens signed ES256) and plain (none), the given retry waits, and its log observed.
type bclNode struct {
	*flowProvider
	logs *observer.ObservedLogs
}

func newBCLNode(t *testing.T, kv store.KV, ks []*keys.Key, uri string, retries ...time.Duration) *bclNode {
	t.Helper()
	settings := clients.ProviderSettings{}
	for _, k := range ks {
		settings.SigningKeys = append(settings.SigningKeys, clients.SigningKey{ID: k.ID, Algorithm: k.Algorithm})
	}
	reg := map[string]*clients.Client{}
	for _, cfg := range []clients.Config{
		{ID: "rp1", BackchannelLogoutURI: uri, BackchannelLogoutSessionRequired: true},
		{ID: "rp2", BackchannelLogoutURI: uri, IDTokenSignedResponseAlg: "ES256"},
		{ID: "plain"},
	} {
		cfg.Secret = "$plaintext$" + cfg.ID + "-secret"
		cfg.GrantTypes = []string{"authorization_code", "refresh_token"}
		cfg.Scopes = []string{"openid", "offline_access"}
		cfg.RedirectURIs = []string{testRedirect}
		c, err := clients.NewFor(cfg, clients.Lifespans{}, settings)
		if err != nil {
			t.Fatal(err)
		}
		reg[cfg.ID] = c
	}
	lookup := func(id string) (*clients.Client, bool) { c, ok := reg[id]; return c, ok }
	core, logs := observer.New(zap.InfoLevel)
	people := &testPeople{disabled: map[string]bool{}}
	p := New(Config{
		Issuer:     "https://auth.example.com",
		Lifespans:  clients.Lifespans{AccessToken: time.Hour, RefreshToken: time.Hour, AuthorizeCode: time.Minute, IDToken: time.Hour},
		HMACSecret: bytes.Repeat([]byte("k"), 32),
		KV:         kv,
		Clients:    lookup,
		Authenticator: &clients.Authenticator{Lookup: lookup, Secrets: digest.NewCache(100, time.Hour),
			Limits: clients.NewLimits(), Logger: zap.NewNop()},
		ClientIP:           func(*http.Request) string { return "127.0.0.1" },
		Keys:               ks,
		Tokens:             NewTokenCache(100),
		People:             people,
		Logger:             zap.New(core),
		SessionLifespan:    30 * 24 * time.Hour,
		BackchannelRetries: retries,
	})
	t.Cleanup(p.StopBackchannelLogout)
	return &bclNode{flowProvider: &flowProvider{t: t, p: p, people: people, kv: kv}, logs: logs}
}

func badgerKV(t *testing.T, dir string) *store.Badger {
	t.Helper()
	kv, err := store.Open(dir, store.Options{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Destruct() })
	return kv
}

// signIn runs client's code flow through the portal session ref and returns the ID token and
// the refresh token.
func (n *bclNode) signIn(client, ref string) (idToken, refresh string) {
	n.t.Helper()
	q := url.Values{"client_id": {client}, "response_type": {"code"}, "scope": {"openid offline_access"},
		"redirect_uri": {testRedirect}, "state": {"state-0123456789"}, "nonce": {"nonce-0123456789"}}
	r := httptest.NewRequest(http.MethodGet, PathAuthorization+"?"+q.Encode(), nil)
	a, err := n.p.NewAuthorizeRequest(r.Context(), r, "browser-1")
	if err != nil {
		n.t.Fatalf("authorization request: %v", err)
	}
	w := httptest.NewRecorder()
	n.p.Authorize(r.Context(), w, a, Grant{Username: "john", Subject: "sub-john-" + client, AuthTime: time.Now(), AMR: []string{"pwd"},
		Scopes: a.Scopes(), BrowserSession: ref})
	loc, _ := url.Parse(w.Header().Get("Location"))
	status, out := n.exchange(client, loc.Query().Get("code"), "")
	if status != http.StatusOK {
		n.t.Fatalf("%s: exchange: %d %v", client, status, out)
	}
	idToken, _ = out["id_token"].(string)
	refresh, _ = out["refresh_token"].(string)
	return idToken, refresh
}

// jobs are the queued jobs by key.
func (n *bclNode) jobs() map[string]bclJob {
	n.t.Helper()
	ks, err := n.kv.Keys(n.t.Context(), []byte(bclQueuePrefix))
	if err != nil {
		n.t.Fatal(err)
	}
	out := map[string]bclJob{}
	for _, k := range ks {
		data, err := n.kv.Get(n.t.Context(), k)
		if err != nil {
			continue
		}
		var j bclJob
		if err := json.Unmarshal(data, &j); err != nil {
			n.t.Fatal(err)
		}
		out[string(k)] = j
	}
	return out
}

// unverifiedClaims decodes a JWS's claims without checking it.
func unverifiedClaims(t *testing.T, raw string) map[string]any {
	t.Helper()
	tok, err := josejwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// verifyLogoutToken checks a logout token as a relying party does (Back-Channel Logout 1.0
// §2.6), with go-jose against the provider's public keys, and returns its claims.
func verifyLogoutToken(t *testing.T, raw string, ks []*keys.Key, client, wantAlg string) map[string]any {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatalf("the logout token is not a JWS: %v", err)
	}
	h := jws.Signatures[0].Header
	if h.Algorithm != wantAlg || h.ExtraHeaders["typ"] != "logout+jwt" {
		t.Errorf("%s: logout token header alg %q typ %v, want %s and logout+jwt", client, h.Algorithm, h.ExtraHeaders["typ"], wantAlg)
	}
	var key *keys.Key
	for _, k := range ks {
		if k.ID == h.KeyID {
			key = k
		}
	}
	if key == nil {
		t.Fatalf("%s: the logout token's kid %q is none of the provider's", client, h.KeyID)
	}
	payload, err := jws.Verify(key.Signer.Public())
	if err != nil {
		t.Fatalf("%s: the logout token's signature: %v", client, err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	var std josejwt.Claims
	_ = json.Unmarshal(payload, &std)
	if err := std.ValidateWithLeeway(josejwt.Expected{Issuer: "https://auth.example.com", AnyAudience: josejwt.Audience{client}}, time.Second); err != nil {
		t.Errorf("%s: logout token claims: %v", client, err)
	}
	events, _ := c["events"].(map[string]any)
	if ev, ok := events[BackchannelEvent].(map[string]any); !ok || len(ev) != 0 || len(events) != 1 {
		t.Errorf("%s: events %v", client, c["events"])
	}
	if _, has := c["nonce"]; has {
		t.Errorf("%s: a logout token carries a nonce", client)
	}
	if c["jti"] == "" || c["jti"] == nil || c["iat"] == nil || std.Expiry == nil || std.Expiry.Time().Sub(std.IssuedAt.Time()) > 5*time.Minute {
		t.Errorf("%s: jti/iat/exp: %v", client, c)
	}
	return c
}

// An ID token issued through a portal session carries its sid; when the session ends, each
// client with a backchannel_logout_uri that got an ID token in it (rp1 RS256, rp2 ES256) gets
// one logout token with that sid and the subject it knows, signed by its ID tokens' key, and a
// client without one (plain) gets nothing; another session's clients are not told.
func TestBackchannelLogoutTokens(t *testing.T) {
	rec := newReceiver(t)
	ks := testKeys(t, "RS256", "ES256")
	n := newBCLNode(t, badgerKV(t, t.TempDir()), ks, rec.srv.URL+"/bcl")
	n.p.StartBackchannelLogout()
	ids := map[string]string{}
	for _, c := range []string{"rp1", "rp2", "plain"} {
		ids[c], _ = n.signIn(c, "ref-a")
	}
	otherID, otherRT := n.signIn("rp1", "ref-b")
	sid := unverifiedClaims(t, ids["rp1"])["sid"]
	if sid == nil || sid == "" || unverifiedClaims(t, ids["rp2"])["sid"] != sid || unverifiedClaims(t, ids["plain"])["sid"] != sid {
		t.Fatalf("the ID tokens of one session carry sid %v, %v, %v", sid, unverifiedClaims(t, ids["rp2"])["sid"], unverifiedClaims(t, ids["plain"])["sid"])
	}
	otherSID := unverifiedClaims(t, otherID)["sid"]
	if otherSID == sid || otherSID == nil {
		t.Fatalf("two sessions share the sid %v", sid)
	}
	// a refreshed ID token keeps the sid
	status, out := n.refresh("rp1", otherRT)
	if status != http.StatusOK || unverifiedClaims(t, out["id_token"].(string))["sid"] != otherSID {
		t.Fatalf("refresh: %d, sid of the new ID token %v", status, out)
	}
	otherRT, _ = out["refresh_token"].(string)
	if _, err := n.p.EndBrowserSession(t.Context(), "ref-a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "two logout tokens", func() bool { got, _ := rec.got(); return len(got) >= 2 })
	time.Sleep(200 * time.Millisecond) // nothing more comes
	got, _ := rec.got()
	if len(got) != 2 {
		t.Fatalf("%d logout tokens for two clients", len(got))
	}
	seen := map[string]bool{}
	for _, raw := range got {
		aud := unverifiedClaims(t, raw)["aud"].([]any)[0].(string)
		alg := map[string]string{"rp1": "RS256", "rp2": "ES256"}[aud]
		c := verifyLogoutToken(t, raw, ks, aud, alg)
		if c["sid"] != sid || c["sub"] != "sub-john-"+aud {
			t.Errorf("%s: sid %v sub %v, want %v and sub-john-%s", aud, c["sid"], c["sub"], sid, aud)
		}
		seen[aud] = true
	}
	if !seen["rp1"] || !seen["rp2"] {
		t.Errorf("logout tokens went to %v", seen)
	}
	if j := n.jobs(); len(j) != 0 {
		t.Errorf("jobs left after delivery: %v", j)
	}
	// the session is ended once: a second end sends nothing
	if _, err := n.p.EndBrowserSession(t.Context(), "ref-a"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got, _ := rec.got(); len(got) != 2 {
		t.Errorf("a second end of the session sent %d more", len(got)-2)
	}
	// a logout token is no ID token hint
	if _, err := n.p.ParseLogout(t.Context(), url.Values{"id_token_hint": {got[0]}}); err == nil {
		t.Error("a logout token was taken as an id_token_hint")
	}
	// the other session ends: rp1 is told once; a refresh afterwards (the refresh token
	// outlives the session) records nothing, so a later end of that ref tells nobody again
	if _, err := n.p.EndBrowserSession(t.Context(), "ref-b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the other session's logout", func() bool { got, _ := rec.got(); return len(got) == 3 })
	if got, _ := rec.got(); unverifiedClaims(t, got[2])["sid"] != otherSID {
		t.Errorf("the other session's logout has sid %v, want %v", unverifiedClaims(t, got[2])["sid"], otherSID)
	}
	if status, out := n.refresh("rp1", otherRT); status != http.StatusOK {
		t.Fatalf("refresh after the session ended: %d %v", status, out)
	}
	if ks, _ := n.kv.Keys(t.Context(), []byte(bclIndexPrefix)); len(ks) != 0 {
		t.Errorf("a refresh after the session ended recorded %q", ks)
	}
	if _, err := n.p.EndBrowserSession(t.Context(), "ref-b"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got, _ := rec.got(); len(got) != 3 {
		t.Errorf("%d logout tokens after ending an ended session again, want 3", len(got))
	}
}

// A receiver that fails is retried after each wait in turn (measured from the failure), and
// the token is minted afresh for each attempt; once it answers 204 the job is gone.
func TestBackchannelRetriesWithBackoff(t *testing.T) {
	rec := newReceiver(t)
	rec.answer = func(n int) int {
		if n <= 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	retries := []time.Duration{150 * time.Millisecond, 300 * time.Millisecond, 600 * time.Millisecond, time.Hour}
	n := newBCLNode(t, badgerKV(t, t.TempDir()), testKeys(t, "RS256", "ES256"), rec.srv.URL, retries...)
	n.signIn("rp1", "ref-r")
	n.p.StartBackchannelLogout()
	if _, err := n.p.EndBrowserSession(t.Context(), "ref-r"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the first attempt", func() bool { got, _ := rec.got(); return len(got) >= 1 })
	time.Sleep(30 * time.Millisecond)
	for _, j := range n.jobs() {
		if j.Attempts != 1 || j.Due.Before(time.Now()) || time.Until(j.Due) > retries[0] {
			t.Errorf("after one failure the job is %+v, want attempt 1 due within %s", j, retries[0])
		}
	}
	waitFor(t, 5*time.Second, "four attempts", func() bool { got, _ := rec.got(); return len(got) >= 4 })
	got, at := rec.got()
	for i := 1; i < 4; i++ {
		if gap := at[i].Sub(at[i-1]); gap < retries[i-1] || gap > retries[i-1]+time.Second {
			t.Errorf("attempt %d came %s after the one before, want about %s", i+1, gap, retries[i-1])
		}
	}
	jtis := map[any]bool{}
	for _, raw := range got {
		jtis[unverifiedClaims(t, raw)["jti"]] = true
	}
	if len(jtis) != 4 {
		t.Errorf("%d distinct jti over 4 attempts: the token is not minted at send time", len(jtis))
	}
	waitFor(t, time.Second, "the delivered job removed", func() bool { return len(n.jobs()) == 0 })
	time.Sleep(200 * time.Millisecond)
	if got, _ := rec.got(); len(got) != 4 {
		t.Errorf("%d attempts, want 4", len(got))
	}
}

// After the last retry fails, the job is given up, logged at WARN with the client and the
// status and never the token, and not tried again; a redirect is a failure, not followed.
func TestBackchannelGivesUp(t *testing.T) {
	target := newReceiver(t)
	rec := newReceiver(t)
	rec.answer = func(int) int { return http.StatusTemporaryRedirect }
	rec.location = target.srv.URL
	n := newBCLNode(t, badgerKV(t, t.TempDir()), testKeys(t, "RS256", "ES256"), rec.srv.URL, 20*time.Millisecond, 40*time.Millisecond)
	n.signIn("rp1", "ref-g")
	n.p.StartBackchannelLogout()
	if _, err := n.p.EndBrowserSession(t.Context(), "ref-g"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "the job given up", func() bool {
		got, _ := rec.got()
		return len(got) >= 3 && len(n.jobs()) == 0
	})
	time.Sleep(300 * time.Millisecond)
	if got, _ := rec.got(); len(got) != 3 {
		t.Errorf("%d attempts with two retries, want 3", len(got))
	}
	if got, _ := target.got(); len(got) != 0 {
		t.Error("a redirect was followed")
	}
	warns := n.logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("given up").All()
	if len(warns) != 1 {
		t.Fatalf("%d WARN lines for the given-up logout: %v", len(warns), n.logs.All())
	}
	f := warns[0].ContextMap()
	if f["client_id"] != "rp1" || f["status"] != int64(http.StatusTemporaryRedirect) || f["attempts"] != int64(3) {
		t.Errorf("the WARN line's fields: %v", f)
	}
	got, _ := rec.got()
	for _, e := range n.logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, got[0][:20]) || strings.Contains(line, "eyJ") {
			t.Errorf("a log line carries a token: %s", line)
		}
	}
}

// Jobs are store entries: those queued before a restart (one never tried, one put off after a
// failure) are sent by the worker of the next start, at their due times.
func TestBackchannelQueueSurvivesARestart(t *testing.T) {
	rec := newReceiver(t)
	rec.answer = func(n int) int {
		if n == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	}
	dir := t.TempDir()
	kv, err := store.Open(dir, store.Options{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	n := newBCLNode(t, kv, testKeys(t, "RS256", "ES256"), rec.srv.URL, 400*time.Millisecond)
	n.signIn("rp1", "ref-1")
	n.p.StartBackchannelLogout()
	if _, err := n.p.EndBrowserSession(t.Context(), "ref-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the first attempt", func() bool { got, _ := rec.got(); return len(got) == 1 })
	n.p.StopBackchannelLogout() // the node stops with the job put off
	n.signIn("rp2", "ref-2")
	if _, err := n.p.EndBrowserSession(t.Context(), "ref-2"); err != nil {
		t.Fatal(err)
	}
	if j := n.jobs(); len(j) != 2 {
		t.Fatalf("%d jobs queued before the restart, want 2", len(j))
	}
	if err := kv.Destruct(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if got, _ := rec.got(); len(got) != 1 {
		t.Fatalf("a stopped worker sent %d", len(got)-1)
	}
	ks := testKeys(t, "RS256", "ES256")
	m := newBCLNode(t, badgerKV(t, dir), ks, rec.srv.URL, 400*time.Millisecond)
	m.p.StartBackchannelLogout()
	waitFor(t, 3*time.Second, "both logouts delivered after the restart", func() bool { got, _ := rec.got(); return len(got) == 3 })
	got, _ := rec.got()
	auds := map[string]bool{}
	for _, raw := range got[1:] {
		c := unverifiedClaims(t, raw)
		auds[c["aud"].([]any)[0].(string)] = true
	}
	if !auds["rp1"] || !auds["rp2"] {
		t.Errorf("after the restart the logouts went to %v", auds)
	}
	waitFor(t, time.Second, "the queue empty", func() bool { return len(m.jobs()) == 0 })
}

// Two nodes on one PostgreSQL database both run a worker: each of 30 logouts is sent once
// (the lease in the store decides which node sends it), though both see every job.
func TestBackchannelSendsOnceAcrossNodes(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Database(t)
	rec := newReceiver(t)
	rec.delay = 20 * time.Millisecond
	ks := testKeys(t, "RS256", "ES256")
	node := func() *bclNode {
		kv, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kv.Destruct() })
		return newBCLNode(t, kv, ks, rec.srv.URL, 100*time.Millisecond)
	}
	a, b := node(), node()
	const sessions = 30
	for i := range sessions {
		a.signIn("rp1", fmt.Sprintf("ref-%d", i))
	}
	for i := range sessions {
		if _, err := a.p.EndBrowserSession(t.Context(), fmt.Sprintf("ref-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if j := a.jobs(); len(j) != sessions {
		t.Fatalf("%d jobs, want %d", len(j), sessions)
	}
	a.p.StartBackchannelLogout()
	b.p.StartBackchannelLogout()
	a.p.bcl.wake()
	b.p.bcl.wake()
	waitFor(t, 20*time.Second, "every logout delivered", func() bool { return len(a.jobs()) == 0 })
	time.Sleep(300 * time.Millisecond)
	got, _ := rec.got()
	perSID := map[any]int{}
	for _, raw := range got {
		perSID[unverifiedClaims(t, raw)["sid"]]++
	}
	if len(got) != sessions || len(perSID) != sessions {
		t.Errorf("%d deliveries for %d sessions (%d distinct sids), want each once", len(got), sessions, len(perSID))
	}
	sentBy := func(n *bclNode) int { return n.logs.FilterMessage("back-channel logout delivered").Len() }
	t.Logf("node a sent %d, node b sent %d", sentBy(a), sentBy(b))
	if sentBy(a)+sentBy(b) != sessions {
		t.Errorf("the nodes logged %d+%d deliveries, want %d", sentBy(a), sentBy(b), sessions)
	}
}

// The worker stops promptly even while a receiver hangs, and the abandoned delivery stays
// queued as it was (not counted as a failure).
func TestBackchannelStopAbandonsADelivery(t *testing.T) {
	rec := newReceiver(t)
	rec.delay = 3 * time.Second
	n := newBCLNode(t, badgerKV(t, t.TempDir()), testKeys(t, "RS256", "ES256"), rec.srv.URL, time.Minute)
	n.signIn("rp1", "ref-s")
	n.p.StartBackchannelLogout()
	if _, err := n.p.EndBrowserSession(t.Context(), "ref-s"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	n.p.StopBackchannelLogout()
	if d := time.Since(start); d > time.Second {
		t.Errorf("stopping took %s while a receiver hung", d)
	}
	j := n.jobs()
	if len(j) != 1 {
		t.Fatalf("%d jobs after an abandoned delivery, want 1", len(j))
	}
	for _, job := range j {
		if job.Attempts != 0 {
			t.Errorf("the abandoned delivery counted as a failure: %+v", job)
		}
	}
	if ls, _ := n.kv.Keys(t.Context(), []byte(bclLeasePrefix)); len(ls) != 0 {
		t.Errorf("the lease stays after stopping: %q", ls)
	}
}
