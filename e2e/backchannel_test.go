package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// bclReceiver is the back-channel logout endpoint of the applications: http://127.0.0.1:<port>
// /bcl/<client>, on a port it can leave and take again (a receiver that is down, then back).
// It verifies each logout token it is sent as a relying party must (Back-Channel Logout 1.0
// §2.6), with go-jose against the provider's /jwks.json, and keeps what it verified.
type bclReceiver struct {
	t      *testing.T
	port   int
	issuer string
	jwks   func() jose.JSONWebKeySet
	mu     sync.Mutex
	srv    *http.Server
	got    []bclReceived
}

// bclReceived is one verified logout token and the client whose URI it came to.
type bclReceived struct {
	client string
	claims map[string]any
}

func newBCLReceiver(t *testing.T) *bclReceiver {
	r := &bclReceiver{t: t, port: freePort(t)}
	t.Cleanup(r.down)
	return r
}

func (r *bclReceiver) uri(client string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/bcl/%s", r.port, client)
}

// up listens (again) on the receiver's port.
func (r *bclReceiver) up() {
	r.t.Helper()
	var l net.Listener
	var err error
	for range 50 { // the port the receiver just left may take a moment to be free
		if l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", r.port)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 5 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

// down closes the receiver: connections are refused.
func (r *bclReceiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (r *bclReceiver) serve(w http.ResponseWriter, req *http.Request) {
	client, ok := strings.CutPrefix(req.URL.Path, "/bcl/")
	if !ok || req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		r.t.Errorf("back-channel logout: %s %s (%s)", req.Method, req.URL.Path, req.Header.Get("Content-Type"))
		http.Error(w, "want a form POST to /bcl/<client>", http.StatusBadRequest)
		return
	}
	if err := req.ParseForm(); err != nil || len(req.PostForm) != 1 {
		r.t.Errorf("back-channel logout to %s: form %v (%v), want logout_token alone", client, req.PostForm, err)
	}
	claims, err := r.verify(req.PostForm.Get("logout_token"), client)
	if err != nil {
		r.t.Errorf("back-channel logout to %s: %v", client, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.got = append(r.got, bclReceived{client: client, claims: claims})
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// verify checks a logout token for client: a JWS of the provider's keys with typ logout+jwt,
// iss, aud, iat and exp, jti, sub and sid, the back-channel logout event, and no nonce.
func (r *bclReceiver) verify(raw, client string) (map[string]any, error) {
	algs := []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.PS256, jose.EdDSA}
	jws, err := jose.ParseSignedCompact(raw, algs)
	if err != nil {
		return nil, fmt.Errorf("not a JWS: %w", err)
	}
	h := jws.Signatures[0].Header
	if h.ExtraHeaders["typ"] != "logout+jwt" {
		return nil, fmt.Errorf("typ %v, want logout+jwt", h.ExtraHeaders["typ"])
	}
	set := r.jwks()
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		return nil, fmt.Errorf("kid %q is not in /jwks.json", h.KeyID)
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	var std josejwt.Claims
	var claims map[string]any
	if err := json.Unmarshal(payload, &std); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, err
	}
	if err := std.ValidateWithLeeway(josejwt.Expected{Issuer: r.issuer, AnyAudience: josejwt.Audience{client}}, 5*time.Second); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	switch {
	case std.IssuedAt == nil || std.Expiry == nil || std.ID == "":
		return nil, errors.New("no iat, exp or jti")
	case std.Subject == "" || claims["sid"] == nil:
		return nil, errors.New("no sub or sid")
	case claims["nonce"] != nil:
		return nil, errors.New("a nonce")
	}
	events, _ := claims["events"].(map[string]any)
	if ev, ok := events["http://schemas.openid.net/event/backchannel-logout"].(map[string]any); !ok || len(ev) != 0 {
		return nil, fmt.Errorf("events %v", claims["events"])
	}
	return claims, nil
}

// received are the verified logout tokens so far.
func (r *bclReceiver) received() []bclReceived {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bclReceived(nil), r.got...)
}

// expect waits for the count of verified tokens to reach want, and for no more to come in a
// moment, and returns those past from.
func (r *bclReceiver) expect(from, want int, limit time.Duration) []bclReceived {
	r.t.Helper()
	deadline := time.Now().Add(limit)
	for len(r.received()) < from+want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	got := r.received()[from:]
	if len(got) != want {
		r.t.Fatalf("%d logout tokens, want %d: %v", len(got), want, got)
	}
	return got
}

// checkFor checks that a logout token went to client for the session of the ID token claims
// idt (its sid and sub).
func checkFor(t *testing.T, got []bclReceived, client string, idt map[string]any) {
	t.Helper()
	for _, g := range got {
		if g.client != client {
			continue
		}
		if g.claims["sid"] != idt["sid"] || g.claims["sub"] != idt["sub"] {
			t.Errorf("%s: logout token sid %v sub %v, the ID token's sid %v sub %v", client, g.claims["sid"], g.claims["sub"], idt["sid"], idt["sub"])
		}
		return
	}
	t.Errorf("no logout token went to %s: %v", client, got)
}

// Back-channel logout with the real server: each application that got an ID token in a session
// is sent a verified logout token with the ID token's sid when the session ends at the portal,
// by an application's RP-initiated logout, by `caddy oidc sessions end`, or by a newer sign-in
// in the same browser, or by a password reset; one without a
// backchannel_logout_uri is sent nothing; a receiver that is down does not slow the sign-out
// and gets its token once it is back; a job pending when Caddy stops is sent after the restart.
func TestBackchannelLogout(t *testing.T) {
	// a test schedule of retries, so a receiver that is down is retried within seconds
	t.Setenv("PORTCULLIS_TEST_BACKCHANNEL_RETRIES", "1s,1s,2s,2s,5s,10s")
	rec := newBCLReceiver(t)
	rec.up()
	notes := filepath.Join(t.TempDir(), "notification.txt")
	s := startOIDCHTTPSite(t,
		rpClient("bc1", "backchannel_logout_uri "+rec.uri("bc1"), "backchannel_logout_session_required true")+
			rpClient("bc2", "backchannel_logout_uri "+rec.uri("bc2"))+
			rpClient("nobc")+
			"\t\tnotifier {\n\t\t\tfilesystem "+notes+"\n\t\t}\n")
	rec.issuer = s.issuer
	// the applications fetch the JWKS once and keep it, as relying parties do (the restarted
	// server sends a pending logout while its TLS may not yet answer)
	var set jose.JSONWebKeySet
	resp, err := s.hc.Get(s.issuer + "/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("/jwks.json: %v %s", err, b)
	}
	rec.jwks = func() jose.JSONWebKeySet { return set }

	var disc map[string]any
	if resp, err := s.hc.Get(s.issuer + "/.well-known/openid-configuration"); err != nil {
		t.Fatal(err)
	} else {
		_ = json.NewDecoder(resp.Body).Decode(&disc)
		resp.Body.Close()
	}
	if disc["backchannel_logout_supported"] != true || disc["backchannel_logout_session_supported"] != true {
		t.Errorf("discovery: backchannel_logout_supported %v, backchannel_logout_session_supported %v", disc["backchannel_logout_supported"], disc["backchannel_logout_session_supported"])
	}

	t.Run("portal sign-out", func(t *testing.T) {
		s := s.with(t)
		v := newVisitor(t, s.portalSite, "")
		idts := map[string]map[string]any{}
		for _, c := range []string{"bc1", "bc2", "nobc"} {
			idts[c] = s.codeFlow(v, c, nil).claims
		}
		if idts["bc1"]["sid"] == nil || idts["bc1"]["sid"] != idts["bc2"]["sid"] || idts["bc1"]["sid"] != idts["nobc"]["sid"] {
			t.Fatalf("the ID tokens of one session carry sid %v, %v, %v", idts["bc1"]["sid"], idts["bc2"]["sid"], idts["nobc"]["sid"])
		}
		from := len(rec.received())
		v.signOut()
		got := rec.expect(from, 2, 10*time.Second*slow) // bc1 and bc2 once each, nobc nothing
		checkFor(t, got, "bc1", idts["bc1"])
		checkFor(t, got, "bc2", idts["bc2"])
	})

	t.Run("RP-initiated logout", func(t *testing.T) {
		s := s.with(t)
		v := newVisitor(t, s.portalSite, "")
		si := s.codeFlow(v, "bc1", nil)
		from := len(rec.received())
		resp, page := v.do(http.MethodGet, s.issuer+"/api/oidc/logout?"+url.Values{"id_token_hint": {si.raw}}.Encode(), nil)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout with an id_token_hint: %d: %.200s", resp.StatusCode, page)
		}
		checkFor(t, rec.expect(from, 1, 10*time.Second*slow), "bc1", si.claims)
	})

	t.Run("caddy oidc sessions end", func(t *testing.T) {
		s := s.with(t)
		v := newVisitor(t, s.portalSite, "")
		si := s.codeFlow(v, "bc2", nil)
		from := len(rec.received())
		out, errOut, code := command(t, "", "sessions", "end", "--user", "john", "--address", fmt.Sprintf("localhost:%d", s.admin))
		if code != 0 {
			t.Fatalf("caddy oidc sessions end: %d %s %s", code, out, errOut)
		}
		checkFor(t, rec.expect(from, 1, 10*time.Second*slow), "bc2", si.claims)
	})

	t.Run("a newer sign-in replaces the session", func(t *testing.T) {
		s := s.with(t)
		v := newVisitor(t, s.portalSite, "")
		si := s.codeFlow(v, "bc1", nil)
		from := len(rec.received())
		v.signIn(s.url("auth", "/?prompt=login"), "john", "pw-john")
		checkFor(t, rec.expect(from, 1, 10*time.Second*slow), "bc1", si.claims)
		// the new session's ID token has another sid, told at its own end
		again := s.codeFlow(v, "bc1", nil)
		if again.claims["sid"] == si.claims["sid"] {
			t.Errorf("the new session's ID token has the replaced one's sid %v", si.claims["sid"])
		}
		v.signOut()
		checkFor(t, rec.expect(from+1, 1, 10*time.Second*slow), "bc1", again.claims)
	})

	t.Run("receiver down", func(t *testing.T) {
		s := s.with(t)
		rec.down()
		v := newVisitor(t, s.portalSite, "")
		si := s.codeFlow(v, "bc1", nil)
		from := len(rec.received())
		retried := strings.Count(s.s.log.String(), "back-channel logout failed; it will be retried")
		start := time.Now()
		v.signOut()
		if d := time.Since(start); d > 2*time.Second*slow {
			t.Errorf("signing out took %s with the receiver down", d)
		}
		deadline := time.Now().Add(10 * time.Second * slow)
		for strings.Count(s.s.log.String(), "back-channel logout failed; it will be retried") < retried+2 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if n := strings.Count(s.s.log.String(), "back-channel logout failed; it will be retried") - retried; n < 2 {
			t.Fatalf("%d failed attempts logged while the receiver was down, want at least 2", n)
		}
		rec.up()
		checkFor(t, rec.expect(from, 1, 15*time.Second*slow), "bc1", si.claims)
		m := scrape(t, s.hc, s.admin)
		if m[`portcullis_backchannel_logouts_total{client="bc1",result="retried"}`] < 2 || m[`portcullis_backchannel_logouts_total{client="bc1",result="delivered"}`] < 5 {
			t.Errorf("metrics: bc1 retried %v, delivered %v", m[`portcullis_backchannel_logouts_total{client="bc1",result="retried"}`], m[`portcullis_backchannel_logouts_total{client="bc1",result="delivered"}`])
		}
	})

	t.Run("restart with a pending logout", func(t *testing.T) {
		s := s.with(t)
		rec.down()
		v := newVisitor(t, s.portalSite, "")
		si := s.codeFlow(v, "bc2", nil)
		from := len(rec.received())
		retried := strings.Count(s.s.log.String(), "back-channel logout failed; it will be retried")
		v.signOut()
		deadline := time.Now().Add(10 * time.Second * slow)
		for strings.Count(s.s.log.String(), "back-channel logout failed; it will be retried") == retried && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		s.s.stop()
		delivered := strings.Count(s.s.log.String(), "back-channel logout delivered")
		rec.up()
		time.Sleep(2 * time.Second) // past the retry's due time: only a running worker sends it
		if len(rec.received()) != from {
			t.Fatal("a logout was delivered while Caddy was stopped")
		}
		s.start()
		checkFor(t, rec.expect(from, 1, 15*time.Second*slow), "bc2", si.claims)
		if strings.Count(s.s.log.String(), "back-channel logout delivered") != delivered+1 {
			t.Error("the restarted server did not log the delivery")
		}
	})

	// last, as john's password changes: a reset ends every session of john, each told
	t.Run("password reset", func(t *testing.T) {
		s := s.with(t)
		a, b := newVisitor(t, s.portalSite, ""), newVisitor(t, s.portalSite, "")
		first, second := s.codeFlow(a, "bc1", nil), s.codeFlow(b, "bc2", nil)
		from := len(rec.received())
		resetPassword(t, newVisitor(t, s.portalSite, "203.0.113.5"), notes, 0, "john", "john-after-the-reset")
		got := rec.expect(from, 2, 10*time.Second*slow)
		checkFor(t, got, "bc1", first.claims)
		checkFor(t, got, "bc2", second.claims)
	})

	if log := s.s.log.String(); strings.Contains(log, "eyJ") {
		t.Error("the server's log carries a JWT")
	}
}

// Two nodes on one PostgreSQL, both running the delivery worker: each of ten sessions signed in
// on A and ended on A or B is told once, whichever node sends it; a node killed after a failed
// attempt leaves its job to the other, which sends it once the receiver is back.
func TestBackchannelLogoutInACluster(t *testing.T) {
	t.Setenv("PORTCULLIS_TEST_BACKCHANNEL_RETRIES", "1s,1s,2s,2s,5s,10s")
	rec := newBCLReceiver(t)
	rec.up()
	c := startClusterWith(t, rpClient("bc", "backchannel_logout_uri "+rec.uri("bc"), "scopes openid profile"))
	a, b := c.a, c.b
	rec.issuer = a.url("auth", "")
	var set jose.JSONWebKeySet
	resp, err := a.hc.Get(a.url("auth", "/jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	rec.jwks = func() jose.JSONWebKeySet { return set }

	// signIn signs john in on A in a browser of its own and gets bc's ID token there
	signIn := func(t *testing.T) (*visitor, http.CookieJar, map[string]any) {
		jar := newJar(t)
		v := a.browser(t, jar)
		code, ar := authCode(t, v, a, "bc", url.Values{"scope": {"openid profile"}})
		status, out, err := a.tokenEndpoint(a.hc, "bc", "bc-secret", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {redirectURI("bc")}, "code_verifier": {ar.verifier}})
		raw, _ := out["id_token"].(string)
		if err != nil || status != http.StatusOK || raw == "" {
			t.Fatalf("bc's code exchange on A: %d %v %v", status, out, err)
		}
		_, claims := a.on(t).verifyIDToken("bc", raw, ar.nonce)
		return v, jar, claims
	}

	t.Run("each logout sent once", func(t *testing.T) {
		const sessions = 10
		type signedOut struct {
			v      *visitor
			claims map[string]any
		}
		var all []signedOut
		for i := range sessions {
			v, jar, claims := signIn(t)
			if i%2 == 1 {
				v = b.browser(t, jar) // the same browser, sent to B by the balancer
			}
			all = append(all, signedOut{v, claims})
		}
		from := len(rec.received())
		for _, so := range all {
			so.v.signOut()
		}
		got := rec.expect(from, sessions, 20*time.Second*slow)
		sids := map[any]int{}
		for _, g := range got {
			sids[g.claims["sid"]]++
		}
		for _, so := range all {
			if sids[so.claims["sid"]] != 1 {
				t.Errorf("session %v was told %d times", so.claims["sid"], sids[so.claims["sid"]])
			}
		}
		byA := strings.Count(a.srv.log.String(), "back-channel logout delivered")
		byB := strings.Count(b.srv.log.String(), "back-channel logout delivered")
		t.Logf("delivered by A: %d, by B: %d", byA, byB)
		if byA+byB != sessions {
			t.Errorf("the nodes logged %d+%d deliveries, want %d", byA, byB, sessions)
		}
	})

	t.Run("a node that dies leaves its job to the other", func(t *testing.T) {
		rec.down()
		v, _, claims := signIn(t)
		from := len(rec.received())
		failed := strings.Count(a.srv.log.String(), "back-channel logout failed")
		v.signOut() // on A, which queues it and tries at once
		deadline := time.Now().Add(10 * time.Second * slow)
		for strings.Count(a.srv.log.String()+b.srv.log.String(), "back-channel logout failed") <= failed && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // A puts the job off and lets its lease go after logging
		a.kill9(t)
		deliveredByB := strings.Count(b.srv.log.String(), "back-channel logout delivered")
		rec.up()
		checkFor(t, rec.expect(from, 1, 20*time.Second*slow), "bc", claims)
		if strings.Count(b.srv.log.String(), "back-channel logout delivered") != deliveredByB+1 {
			t.Error("B did not log the delivery of A's job")
		}
	})
}
