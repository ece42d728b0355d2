package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// seedDigest is the digest of insecure_secret from seed 000 (pbkdf2-sha512, 310000 iterations).
const seedDigest = "$pbkdf2-sha512$310000$c8p78n7pUMln0jzvd4aK4Q$JNRBzwAo0ek5qKn50cFzzvE9RXV88h1wJn5KGiHrD0YKtZaR/nCb2CJPOsKaPK0hjf.9yHxzQGZziziccp6Yng"

// recorder is an upstream that records what reached it: path as sent, headers, trailers.
type recorder struct {
	srv  *httptest.Server
	hits atomic.Int32
}

func newRecorder(t *testing.T) *recorder {
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body) // trailers arrive after the body
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.EscapedPath(), "headers": r.Header, "trailers": r.Trailer})
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

// hardened is a running Caddy with a config built for the hardening checks.
type hardened struct {
	t                   *testing.T
	s                   *server
	httpPort, adminPort int
	otherPort           int // a second listener of the same Caddy
	up                  *recorder
	config              func(hmac string) string
}

func (h *hardened) base(host string) string {
	return fmt.Sprintf("http://%s.localhost:%d", host, h.httpPort)
}

func startHardened(t *testing.T) *hardened {
	h := &hardened{t: t, adminPort: freePort(t), httpPort: freePort(t), otherPort: freePort(t), up: newRecorder(t)}
	store := filepath.Join(t.TempDir(), "store")
	up := strings.TrimPrefix(h.up.srv.URL, "http://")
	h.config = func(hmac string) string {
		return fmt.Sprintf(`{
	admin localhost:%[1]d
	http_port %[2]d
	servers {
		trusted_proxies static 127.0.0.1/32
	}
	log {
		level INFO
	}
	oidc {
		issuer http://auth.localhost:%[2]d
		storage %[3]s
		hmac_secret %[5]s
		client kuma {
			secret "%[6]s"
			scopes authelia.bearer.authz
			audience http://secure.localhost:%[2]d/ https://proxied.localhost/
			grant_types client_credentials
			requested_audience_mode implicit
		}
		client api {
			secret "$plaintext$api-secret"
			scopes authelia.bearer.authz
			audience http://apps.localhost:%[2]d/api
			grant_types client_credentials
			requested_audience_mode implicit
		}
		client poster {
			secret "$plaintext$poster-secret"
			scopes custom
			grant_types client_credentials
			token_endpoint_auth_method client_secret_post
		}
		access_control {
			default_policy deny
			rule {
				domain secure.localhost proxied.localhost
				subject oauth2:client:kuma
				policy one_factor
			}
			rule {
				domain apps.localhost
				subject oauth2:client:api
				policy one_factor
			}
		}
	}
}

http://auth.localhost:%[2]d {
	oidc_provider
}

http://secure.localhost:%[2]d, http://secure.localhost.:%[2]d {
	log {
		output stderr
	}
	oidc_auth {
		rule {
			resources "^/public/"
			policy bypass
		}
	}
	reverse_proxy %[4]s
}

http://apps.localhost:%[2]d {
	rewrite /alias /api/alias-target
	oidc_auth
	reverse_proxy %[4]s
}

http://proxied.localhost:%[2]d {
	oidc_auth
	reverse_proxy %[4]s
}

http://apps.localhost:%[7]d {
	oidc_auth
	respond "the other listener"
}
`, h.adminPort, h.httpPort, store, up, hmac, seedDigest, h.otherPort)
	}
	h.s = newServer(t, h.config("0123456789abcdef0123456789abcdef-first"), h.adminPort, h.httpPort)
	h.s.readyURL = h.base("auth") + "/.well-known/openid-configuration"
	h.s.start()
	return h
}

// token gets an access token with client_credentials and Basic authentication.
func (h *hardened) token(id, secret string) string {
	h.t.Helper()
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: h.base("auth") + "/api/oidc/token", Scopes: []string{"authelia.bearer.authz"}, AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, client()))
	if err != nil {
		h.t.Fatalf("token for %s: %v", id, err)
	}
	return tok.AccessToken
}

// raw sends a request exactly as written (no client-side cleaning of the path) from the local
// address from (empty: any) and returns the response and the upstream's record of it, if any.
func (h *hardened) raw(from, method, host, target string, header map[string]string, body string) (*http.Response, map[string]any) {
	h.t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", h.httpPort))
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, host)
	for k, v := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	if _, err := io.WriteString(c, b.String()); err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var rec map[string]any
	if resp.StatusCode == 200 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(data, &rec)
	}
	return resp, rec
}

func (h *hardened) host(name string) string { return fmt.Sprintf("%s.localhost:%d", name, h.httpPort) }

// Defect 1: a path-prefix audience must not be escaped with dot segments, encoded slashes,
// backslashes or ;params: such paths are refused with 400 before any check, and the upstream
// never sees them; ordinary paths reach the upstream exactly as sent.
func TestPathEscapesAreRefused(t *testing.T) {
	h := startHardened(t)
	api := h.token("api", "api-secret")
	bearer := map[string]string{"Authorization": "Bearer " + api}
	for _, p := range []string{
		"/api/../admin", "/api/%2e%2e/admin", "/api/%2E%2E/admin", "/api/..%2fadmin", "/api/..%2Fadmin",
		"/api/..;/admin", "/api/.%2e/admin", "/api/./../admin", "/api%2f..%2fadmin", "/api/..%5cadmin",
		`/api/..\admin`, "/api/%00/x", "/api/%252e%252e/admin",
		"/api/%25%32%65%25%32%65/admin", "/api/%252%65%252%65/admin", "/api/..%25%32%66admin",
		"/api/..%25%35%63admin", "/api/%25%30%30", "/api/%25252e%25252e/admin", "/api/%c0%ae%c0%ae/admin",
	} {
		before := h.up.hits.Load()
		resp, _ := h.raw("", "GET", h.host("apps"), p, bearer, "")
		if resp.StatusCode != 400 || h.up.hits.Load() != before {
			t.Errorf("%s: %d (upstream reached: %v), want 400 and no upstream request", p, resp.StatusCode, h.up.hits.Load() != before)
		}
	}
	for p, want := range map[string]string{"/api/x": "/api/x", "/api/a%20b": "/api/a%20b", "/api//x": "/api//x", "/api/v1.2/..x": "/api/v1.2/..x"} {
		resp, rec := h.raw("", "GET", h.host("apps"), p, bearer, "")
		if resp.StatusCode != 200 || rec["path"] != want {
			t.Errorf("%s: %d, upstream saw %v, want 200 and %s", p, resp.StatusCode, rec["path"], want)
		}
	}
	// a method in lower case is refused: rules name upper-case methods and many upstreams
	// upper-case what they receive, so "delete" must not slip past a rule on DELETE
	for _, m := range []string{"get", "delete", "Post", "pUT"} {
		before := h.up.hits.Load()
		resp, _ := h.raw("", m, h.host("apps"), "/api/x", bearer, "")
		if resp.StatusCode != 400 || h.up.hits.Load() != before {
			t.Errorf("method %s: %d (upstream reached: %v), want 400 and no upstream request", m, resp.StatusCode, h.up.hits.Load() != before)
		}
	}
	// the rules see the same target: a bypass rule cannot be reached through a dot segment
	if resp, _ := h.raw("", "GET", h.host("secure"), "/public/../private", nil, ""); resp.StatusCode != 400 {
		t.Errorf("/public/../private: %d, want 400", resp.StatusCode)
	}
}

// Defect 2: changing hmac_secret ends every token minted under the old one, even one the gate
// has just accepted and cached.
func TestHMACSecretChangeEndsTokens(t *testing.T) {
	h := startHardened(t)
	tok := h.token("kuma", "insecure_secret")
	bearer := map[string]string{"Authorization": "Bearer " + tok}
	if r := get(t, client(), "GET", h.base("secure")+"/x", bearer); r.status != 200 {
		t.Fatalf("fresh token: %d", r.status)
	}
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://localhost:%d/load", h.adminPort), strings.NewReader(h.config("0123456789abcdef0123456789abcdef-second")))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("reload: %v %v", err, resp)
	}
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		// while the configs are swapped a connection may be dropped (EOF) or answered 503
		r, err := tryGet(t, client(), "GET", h.base("secure")+"/x", bearer)
		if err == nil && r.status == 401 && strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
			break
		}
		if (err == nil && r.status != 503) || time.Now().After(deadline) {
			t.Fatalf("a token minted under the old hmac_secret is still accepted: %d (%v)", r.status, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := get(t, client(), "GET", h.base("secure")+"/x", map[string]string{"Authorization": "Bearer " + h.token("kuma", "insecure_secret")}); r.status != 200 {
		t.Fatalf("a token minted under the new secret: %d", r.status)
	}
}

// countReasons counts the server's "client authentication failed" lines with reason want.
func countReasons(log, want string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "client authentication failed") && strings.Contains(line, `"reason":"`+want+`"`) {
			n++
		}
	}
	return n
}

// Defect 3: 40 simultaneous wrong secrets from one address must not run 40 digest checks.
func TestConcurrentGuessesAreThrottled(t *testing.T) {
	h := startHardened(t)
	var wg sync.WaitGroup
	start := make(chan struct{})
	var refused atomic.Int32
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			status, body := form(t, client(), h.base("auth")+"/api/oidc/token", "kuma", fmt.Sprint("guess-", i), url.Values{"grant_type": {"client_credentials"}})
			if status == 401 && body["error"] == "invalid_client" {
				refused.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if refused.Load() != 40 {
		t.Fatalf("%d of 40 wrong secrets refused with invalid_client", refused.Load())
	}
	// every refusal logs its line before it answers; wait for the 40 to come through the pipe
	for deadline := time.Now().Add(10 * time.Second); strings.Count(h.s.log.String(), "client authentication failed") < 40 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := countReasons(h.s.log.String(), "wrong secret"); n == 0 || n > 10 {
		t.Fatalf("%d digest checks for 40 concurrent guesses from one address; at most the burst (10) may run", n)
	}
}

// Defect 4: a guesser hammering a client's id from one address cannot lock the real client out:
// after a restart (nothing remembered), the real client, from another loopback address, still
// gets a token in about the time one digest check takes it alone, not after a throttle window.
func TestGuesserCannotLockOutTheMonitor(t *testing.T) {
	h := startHardened(t)
	h.token("kuma", "insecure_secret")
	// what one token costs the monitor with nothing remembered and no guesser (a digest check,
	// several times slower in a -race server), measured after a restart as the attacked one is
	h.s.stop()
	h.s.start()
	began := time.Now()
	if status, body := form(t, client(), h.base("auth")+"/api/oidc/token", "kuma", "insecure_secret", url.Values{"grant_type": {"client_credentials"}, "scope": {"authelia.bearer.authz"}}); status != 200 {
		t.Fatalf("the monitor alone: %d %v", status, body)
	}
	alone := time.Since(began)
	guesser := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	stop := make(chan struct{})
	var guesses atomic.Int32
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/api/oidc/token", h.httpPort), strings.NewReader("grant_type=client_credentials"))
				req.Host = h.host("auth")
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth("kuma", fmt.Sprint("guess-", i))
				if resp, err := guesser.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					guesses.Add(1)
				} else {
					time.Sleep(20 * time.Millisecond) // the server is restarting
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	// the guessers are at work before the restart and again after it
	waitGuesses := func(n int32) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); guesses.Load() < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the guessers made only %d guesses, want %d", guesses.Load(), n)
			}
		}
	}
	waitGuesses(50)
	h.s.stop()
	h.s.start()
	waitGuesses(guesses.Load() + 50)
	began = time.Now()
	status, body := form(t, client(), h.base("auth")+"/api/oidc/token", "kuma", "insecure_secret", url.Values{"grant_type": {"client_credentials"}, "scope": {"authelia.bearer.authz"}})
	took := time.Since(began)
	if status != 200 || body["access_token"] == nil {
		t.Fatalf("the real monitor was refused while its id is being guessed: %d %v", status, body)
	}
	// locked out would mean waiting for a throttle window or a digest slot (seconds to minutes);
	// the monitor may pay for its own check a few times over on a machine the guessers keep busy
	// (4.8 times over once, on a 2-core machine also running other suites)
	if limit := 6*alone + 2*slow*time.Second; took > limit {
		t.Fatalf("the real monitor waited %v for its token while its id is being guessed (%v alone; limit %v)", took, alone, limit)
	}
	t.Logf("%d guesses; the real monitor got its token in %v (%v alone)", guesses.Load(), took, alone)
}

// Defect 5: a known client with the wrong authentication method gets the same answer, at the same
// cost, as an unknown client: nothing names a client's settings.
func TestNoClientEnumeration(t *testing.T) {
	h := startHardened(t)
	cc := url.Values{"grant_type": {"client_credentials"}}
	post := func(id, secret string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	}
	hc := client()
	// cost is the server's CPU time for one request (not wall-clock time, which load skews): a
	// pbkdf2-sha512 check at 310000 iterations costs about 0.15 s of a core.
	do := func(v url.Values, user, pass string) (int, string, time.Duration) {
		req, _ := http.NewRequest("POST", h.base("auth")+"/api/oidc/token", strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		before := cpuTime(t, h.s.cmd.Process.Pid)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data), cpuTime(t, h.s.cmd.Process.Pid) - before
	}
	_, unknownBody, unknownCost := do(cc, "ghost", "some-secret")
	if unknownCost < 50*time.Millisecond {
		t.Fatalf("an unknown client cost the server %v of CPU; it must pay a digest check", unknownCost)
	}
	for name, c := range map[string]struct {
		v          url.Values
		user, pass string
	}{
		"post for a basic client": {post("kuma", "insecure_secret"), "", ""},
		"basic for a post client": {cc, "poster", "poster-secret"},
		"none for a basic client": {url.Values{"grant_type": {"client_credentials"}, "client_id": {"kuma"}}, "", ""},
		"wrong plaintext secret":  {post("poster", "wrong"), "", ""},
	} {
		status, body, cost := do(c.v, c.user, c.pass)
		if status != 401 || body != unknownBody {
			t.Errorf("%s: %d %s; an unknown client gets %s", name, status, body, unknownBody)
		}
		if strings.Contains(body, "client_secret") || strings.Contains(body, "registered") {
			t.Errorf("%s: the answer names the client's settings: %s", name, body)
		}
		if cost < 50*time.Millisecond {
			t.Errorf("%s cost the server %v of CPU, an unknown client %v: the cost tells them apart", name, cost, unknownCost)
		}
	}
}

// cpuTime is the user and system CPU time a process has used so far (Linux /proc).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// fields after the command name in parentheses: state is field 3, utime 14, stime 15
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

// A throttled address gets no answer from the remembered-secret cache, right or wrong (attack: a
// throttled guesser tested 700 secrets a second against the remembered one); the monitor at its
// own address keeps working.
func TestThrottledGuesserGetsNoCacheAnswers(t *testing.T) {
	h := startHardened(t)
	monitor := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	guesser := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 5)}}).DialContext}}
	ask := func(hc *http.Client, secret string) int {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/api/oidc/token", h.httpPort), strings.NewReader("grant_type=client_credentials&scope=authelia.bearer.authz"))
		req.Host = h.host("auth")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("kuma", secret)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := ask(monitor, "insecure_secret"); status != 200 {
		t.Fatalf("monitor: %d", status)
	}
	for i := 0; i < 30; i++ {
		ask(guesser, fmt.Sprint("guess-", i))
	}
	if status := ask(guesser, "insecure_secret"); status != 401 {
		t.Fatalf("a throttled address learnt that a guess is right: %d", status)
	}
	if status := ask(monitor, "insecure_secret"); status != 200 {
		t.Fatalf("the monitor at its own address: %d", status)
	}
}

// A Host naming the port of another of this Caddy's listeners is refused (421): a token for one
// port must not open the site on another by lying in the Host header.
func TestHostPortOfAnotherListener(t *testing.T) {
	h := startHardened(t)
	api := h.token("api", "api-secret")
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", h.otherPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /api/x HTTP/1.1\r\nHost: apps.localhost:%d\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", h.httpPort, api)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusMisdirectedRequest || strings.Contains(string(body), "other listener") {
		t.Fatalf("Host port of another listener: %d %q, want 421", resp.StatusCode, body)
	}
	// the right port, and a Host without a port on a listener that is not 80 (a NAT in front), are
	// judged as asked
	if resp, rec := h.raw("", "GET", h.host("apps"), "/api/x", map[string]string{"Authorization": "Bearer " + api}, ""); resp.StatusCode != 200 || rec == nil {
		t.Fatalf("the token's own port: %d", resp.StatusCode)
	}
	if resp, _ := h.raw("", "GET", "apps.localhost", "/api/x", map[string]string{"Authorization": "Bearer " + api}, ""); resp.StatusCode != 401 {
		t.Fatalf("a Host without a port is port 80, outside the token's audience: %d", resp.StatusCode)
	}
}

// Defect 7: one canonical host everywhere: a Host with a trailing dot is the same host for the
// rules and the audience check.
func TestTrailingDotHost(t *testing.T) {
	h := startHardened(t)
	tok := h.token("kuma", "insecure_secret")
	resp, rec := h.raw("", "GET", fmt.Sprintf("secure.localhost.:%d", h.httpPort), "/x", map[string]string{"Authorization": "Bearer " + tok}, "")
	if resp.StatusCode != 200 || rec == nil {
		t.Fatalf("trailing-dot host: %d, want 200 (rules and audience agree on the host)", resp.StatusCode)
	}
}

// Defect 8: a Bearer value that is not ours, where a caller is needed, is 401 invalid_token, even
// for a browser: never a portal redirect.
func TestForeignBearerIsAFailure(t *testing.T) {
	h := startHardened(t)
	for _, accept := range []string{"text/html", "application/json", "*/*"} {
		r := get(t, client(), "GET", h.base("secure")+"/x", map[string]string{"Authorization": "Bearer mistyped-token", "Accept": accept})
		if r.status != 401 || r.header.Get("Location") != "" || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("Accept %s: %d %v", accept, r.status, r.header)
		}
	}
	// still passed on untouched to a bypass rule
	if r := get(t, client(), "GET", h.base("secure")+"/public/x", map[string]string{"Authorization": "Bearer app-own-token"}); r.status != 200 || r.headers["Authorization"][0] != "Bearer app-own-token" {
		t.Errorf("bypass: %d %v", r.status, r.headers)
	}
}

// Defect 9: the gate judges the URL the caller asked for: before rewrite, and with scheme and host
// from X-Forwarded-* only when the peer is a trusted proxy.
func TestOriginalURLAndTrustedProxies(t *testing.T) {
	h := startHardened(t)
	api := h.token("api", "api-secret")
	// /alias is rewritten to /api/alias-target; the caller asked for /alias, outside the audience
	resp, _ := h.raw("", "GET", h.host("apps"), "/alias", map[string]string{"Authorization": "Bearer " + api}, "")
	if resp.StatusCode != 401 {
		t.Errorf("a rewrite into the audience: %d, want 401 (the caller asked for /alias)", resp.StatusCode)
	}
	resp, _ = h.raw("", "GET", h.host("apps"), "/alias?x=1", map[string]string{"Accept": "text/html"}, "")
	if loc := resp.Header.Get("Location"); resp.StatusCode != 302 || !strings.Contains(loc, url.QueryEscape(h.base("apps")+"/alias?x=1")) {
		t.Errorf("rd after a rewrite: %d %q, want the URL asked for", resp.StatusCode, loc)
	}
	// TLS terminated by a trusted proxy at 127.0.0.1: the token's audience is https://proxied.localhost/
	kuma := h.token("kuma", "insecure_secret")
	fwd := map[string]string{"Authorization": "Bearer " + kuma, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "proxied.localhost"}
	if resp, rec := h.raw("127.0.0.1", "GET", h.host("proxied"), "/status", fwd, ""); resp.StatusCode != 200 || rec == nil {
		t.Errorf("through a trusted proxy: %d, want 200", resp.StatusCode)
	}
	// the same headers from an untrusted peer are ignored: the URL is http://proxied.localhost:port/
	if resp, _ := h.raw("127.0.0.3", "GET", h.host("proxied"), "/status", fwd, ""); resp.StatusCode != 401 {
		t.Errorf("forwarded headers from an untrusted peer: %d, want 401", resp.StatusCode)
	}
	// and an untrusted peer cannot claim another host with X-Forwarded-Host
	sec := map[string]string{"Authorization": "Bearer " + kuma, "X-Forwarded-Host": "evil.localhost"}
	if resp, _ := h.raw("127.0.0.3", "GET", h.host("secure"), "/x", sec, ""); resp.StatusCode != 200 {
		t.Errorf("X-Forwarded-Host from an untrusted peer must be ignored: %d", resp.StatusCode)
	}
}

// Defect 10: Remote_* and Remote.* headers, and Remote-* request trailers, never reach the
// upstream; revocation needs the whole token, not its signature half.
func TestRemoteHeaderVariantsTrailersAndRevocation(t *testing.T) {
	h := startHardened(t)
	kuma := h.token("kuma", "insecure_secret")
	for _, path := range []string{"/public/x", "/x"} {
		hdr := map[string]string{"Authorization": "Bearer " + kuma, "Remote_User": "admin", "Remote.Groups": "admins", "REMOTE-EMAIL": "a@b", "Transfer-Encoding": "chunked", "Trailer": "Remote-User, Remote_Name"}
		body := "4\r\ndata\r\n0\r\nRemote-User: admin\r\nRemote_Name: Admin\r\n\r\n"
		resp, rec := h.raw("", "POST", h.host("secure"), path, hdr, body)
		if resp.StatusCode != 200 || rec == nil {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		for _, part := range []string{"headers", "trailers"} {
			m, _ := rec[part].(map[string]any)
			for k := range m {
				if l := strings.ToLower(k); strings.HasPrefix(l, "remote_") || strings.HasPrefix(l, "remote.") || (strings.HasPrefix(l, "remote-") && l != "remote-client-id") {
					t.Errorf("%s: %s %q reached the upstream", path, part, k)
				}
			}
		}
	}
	// revoking with the signature half only leaves the token active
	sig := kuma[strings.LastIndex(kuma, ".")+1:]
	for _, forged := range []string{"portcullis_at_x." + sig, sig, "portcullis_at_." + sig} {
		if status, _ := form(t, client(), h.base("auth")+"/api/oidc/revocation", "kuma", "insecure_secret", url.Values{"token": {forged}}); status != 200 {
			t.Fatalf("revoking %q: %d, want 200", forged, status)
		}
	}
	if r := get(t, client(), "GET", h.base("secure")+"/x", map[string]string{"Authorization": "Bearer " + kuma}); r.status != 200 {
		t.Fatalf("the token was revoked by its signature half: %d", r.status)
	}
}

// The access log carries the caller's identity as user_id.
func TestAccessLogUserID(t *testing.T) {
	h := startHardened(t)
	kuma := h.token("kuma", "insecure_secret")
	if r := get(t, client(), "GET", h.base("secure")+"/logged", map[string]string{"Authorization": "Bearer " + kuma}); r.status != 200 {
		t.Fatal(r.status)
	}
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(h.s.log.String(), `"user_id":"oauth2:client:kuma"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no access log line with user_id oauth2:client:kuma:\n%s", h.s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(h.s.log.String(), kuma[len("portcullis_at_"):]) || strings.Contains(h.s.log.String(), "insecure_secret") {
		t.Fatal("a token or secret reached the log")
	}
}
