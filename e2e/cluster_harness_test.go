package e2e

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
)

// A cluster is two Caddy processes with the same Caddyfile (only their own ports differ) and the
// same users file, on one PostgreSQL database. The sites' URLs are those of a load balancer in
// front of the nodes, https://<name>.example.test:<public>: nothing listens on the public port;
// a node's clients dial that node's own port whatever the URL says, as a load balancer would
// send the request to one node or the other. A browser (a cookie jar) can so go to A for one
// request and to B for the next with one set of cookies.
type cluster struct {
	t      *testing.T
	pg     *pgtest.Server
	public int // the port of every URL (the issuer's, the audiences')
	up     *recorder
	users  string
	// database is the name of the cluster's database on pg.
	database string
	a, b     *clusterNode
	// extra is more of the oidc block (clients, say), the same on both nodes.
	extra string
}

// clusterNode is one Caddy process of the cluster.
type clusterNode struct {
	name  string
	c     *cluster
	srv   *server
	https int
	// site is the provider as this node serves it: its back channel (hc) reaches this node
	// only, and its go-oidc provider read this node's discovery document and JWKS.
	site *oidcSite
	// hc reaches this node from 127.0.0.1, with keep-alive (for the timed loops).
	hc *http.Client
}

// Client secrets of the cluster's Caddyfile: kuma is a monitor (client_credentials), gw an
// application that calls the gateway as its user (authorization_code, refresh_token), app an
// OpenID Connect application (ID tokens).
const (
	kumaSecret = "kuma-secret"
	gwSecret   = "gw-secret"
	appSecret  = "app-secret"
)

// clusterCaddyfile is the Caddyfile of every node: only admin, http_port and https_port differ.
func (c *cluster) caddyfile(adminPort, httpPort, httpsPort int, db string) string {
	return fmt.Sprintf(`{
	admin localhost:%[1]d
	http_port %[2]d
	https_port %[3]d
	local_certs
	skip_install_trust
	log {
		level INFO
	}
	oidc {
		issuer https://auth.example.test:%[4]d
		storage postgres {
			address tcp://127.0.0.1:%[5]d
			database %[6]s
			username %[7]s
			password %[8]s
		}
		users_file %[9]s
		regulation {
			max_retries 3
			find_time 2m
			ban_time 5m
		}
		session {
			cookie_domain example.test
			expiration 1h
			inactivity 5m
			remember_me 30d
		}
		client kuma {
			secret "$plaintext$%[11]s"
			scopes authelia.bearer.authz
			audience https://secure.example.test:%[4]d/
			grant_types client_credentials
			requested_audience_mode implicit
		}
%[12]s
		access_control {
			default_policy deny
			rule {
				domain secure.example.test
				policy one_factor
			}
		}
	}
}
auth.example.test {
	oidc_provider
}
secure.example.test {
	oidc_auth
	reverse_proxy %[10]s
}
`, adminPort, httpPort, httpsPort, c.public, c.pg.Port, db, pgtest.User, pgtest.Password, c.users,
		strings.TrimPrefix(c.up.srv.URL, "http://"), kumaSecret,
		rpClient("gw", "scopes authelia.bearer.authz offline_access",
			fmt.Sprintf("audience https://secure.example.test:%d/", c.public),
			"grant_types authorization_code refresh_token", "require_pushed_authorization_requests",
			"pkce_challenge_method S256", "consent_mode explicit")+
			rpClient("app", "scopes openid profile")+c.extra)
}

// startCluster starts a throwaway PostgreSQL with an empty database and both nodes on it at
// the same moment (two processes started back to back, each then left to provision), and
// waits until both answer discovery.
func startCluster(t *testing.T) *cluster { return startClusterWith(t, "") }

// startClusterWith is startCluster with extra in both nodes' oidc block.
func startClusterWith(t *testing.T, extra string) *cluster {
	t.Helper()
	c := &cluster{t: t, pg: pgtest.Start(t), public: freePort(t), up: newRecorder(t),
		users: filepath.Join(t.TempDir(), "users.yml"), extra: extra}
	var users strings.Builder
	users.WriteString("users:\n")
	for _, u := range []struct{ name, extra string }{
		{"john", "    displayname: John Doe\n    email: john@example.test\n    groups: [dev, admins]\n"},
		{"jane", "    displayname: Jane Roe\n    email: jane@example.test\n    groups: [dev]\n"},
	} {
		fmt.Fprintf(&users, "  %s:\n    password: %q\n%s", u.name, cheapDigest(t, "pw-"+u.name), u.extra)
	}
	if err := os.WriteFile(c.users, []byte(users.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	dsn, err := url.Parse(c.pg.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	c.database = strings.TrimPrefix(dsn.Path, "/")
	c.a, c.b = c.node("A", c.database), c.node("B", c.database)
	c.a.launch()
	c.b.launch()
	c.a.waitReady(t)
	c.b.waitReady(t)
	return c
}

// cheapDigest is a pbkdf2-sha512 digest of password at 1,000 iterations, in passlib's form as
// go-crypt reads it: the users file is real, but the ban checks' dozens of wrong passwords must
// not cost a -race server a second each (caddy oidc hash will not make fewer than 100,000).
func cheapDigest(t *testing.T, password string) string {
	t.Helper()
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key, err := pbkdf2.Key(sha512.New, password, salt, 1000, 64)
	if err != nil {
		t.Fatal(err)
	}
	ab64 := func(b []byte) string { return strings.ReplaceAll(base64.RawStdEncoding.EncodeToString(b), "+", ".") }
	return fmt.Sprintf("$pbkdf2-sha512$1000$%s$%s", ab64(salt), ab64(key))
}

func (c *cluster) node(name, db string) *clusterNode {
	adminPort, httpPort, httpsPort := freePort(c.t), freePort(c.t), freePort(c.t)
	n := &clusterNode{name: name, c: c, https: httpsPort}
	n.srv = newServer(c.t, c.caddyfile(adminPort, httpPort, httpsPort, db), adminPort, httpsPort)
	n.hc = n.client("")
	return n
}

// launch starts the node's process without waiting for it.
func (n *clusterNode) launch() {
	s := n.srv
	if s.log == nil {
		s.log = &syncBuffer{}
	}
	s.cmd = exec.Command(caddyBin, "run", "--config", s.config, "--adapter", "caddyfile")
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(s.stop)
}

// waitReady waits until the node answers its discovery document (the oidc app answers 503
// until its store is open and its keys are ready), then reads it with go-oidc.
func (n *clusterNode) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second * slow)
	for {
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.srv.cmd.Process.Pid)); err != nil || strings.Contains(string(stat), ") Z ") {
			_ = n.srv.cmd.Wait() // the rest of its output
			t.Fatalf("node %s exited:\n%s", n.name, n.srv.log.String())
		}
		resp, err := n.hc.Get(n.url("auth", "/.well-known/openid-configuration"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s did not answer its discovery document (last: %v %v):\n%s", n.name, resp, err, n.srv.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	p := &portalSite{t: t, s: n.srv, port: n.c.public, admin: n.srv.adminPort, up: n.c.up, users: n.c.users}
	s := &oidcSite{portalSite: p, issuer: p.url("auth", ""), hc: n.hc}
	s.ctx = oidc.ClientContext(context.Background(), n.hc)
	var err error
	if s.provider, err = oidc.NewProvider(s.ctx, s.issuer); err != nil {
		t.Fatalf("node %s: discovery: %v", n.name, err)
	}
	n.site = s
}

// kill9 kills the node's process with SIGKILL, as a crash or the OOM killer would, and fails
// the test if the server had reported a data race before.
func (n *clusterNode) kill9(t *testing.T) {
	t.Helper()
	_ = n.srv.cmd.Process.Signal(syscall.SIGKILL)
	_ = n.srv.cmd.Wait()
	if out := n.srv.log.String(); strings.Contains(out, raceReport) && !n.srv.raceReported {
		n.srv.raceReported = true
		i := strings.Index(out, raceReport)
		t.Errorf("node %s hit a data race:\n%s", n.name, out[i:min(len(out), i+8000)])
	}
}

// url is a URL of the cluster (the load balancer's address).
func (n *clusterNode) url(host, path string) string {
	return fmt.Sprintf("https://%s.example.test:%d%s", host, n.c.public, path)
}

// client is an HTTP client whose every connection goes to this node, from the loopback address
// from ("" for any). It follows no redirect.
func (n *clusterNode) client(from string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	target := fmt.Sprintf("127.0.0.1:%d", n.https)
	return &http.Client{
		Timeout: 20 * time.Second * slow,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
			MaxIdleConnsPerHost: 16,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, target)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// on is the site as node n serves it, reporting to t.
func (n *clusterNode) on(t *testing.T) *oidcSite { return n.site.with(t) }

// browser is a person's browser (one cookie jar) whose requests go to node n; two browsers
// made with the same jar are one person behind a load balancer.
func (n *clusterNode) browser(t *testing.T, jar http.CookieJar) *visitor {
	hc := n.client("")
	hc.Jar = jar
	return &visitor{t: t, p: n.on(t).portalSite, hc: hc}
}

func newJar(t *testing.T) http.CookieJar {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return jar
}

// mint gets a client_credentials token for kuma from node n, without failing the test, so
// that load loops may run it in goroutines.
func (n *clusterNode) mint(hc *http.Client) (token string, status int, err error) {
	req, _ := http.NewRequest(http.MethodPost, n.url("auth", "/api/oidc/token"), strings.NewReader(url.Values{
		"grant_type": {"client_credentials"}, "scope": {"authelia.bearer.authz"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("kuma", kumaSecret)
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	body, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(body, &out)
	if resp.StatusCode == http.StatusOK && out.AccessToken == "" {
		return "", resp.StatusCode, fmt.Errorf("200 without an access token: %.200s", body)
	}
	return out.AccessToken, resp.StatusCode, nil
}

// token mints a kuma token on n and fails the test if it cannot.
func (n *clusterNode) token(t *testing.T) string {
	t.Helper()
	tok, status, err := n.mint(n.hc)
	if err != nil || status != http.StatusOK {
		t.Fatalf("node %s: client_credentials token: %d %v", n.name, status, err)
	}
	return tok
}

// gate calls the protected site on n with a Bearer token and returns the answer (its body
// read), or the transport's error.
func (n *clusterNode) gate(hc *http.Client, token string) (*http.Response, error) {
	req, _ := http.NewRequest(http.MethodGet, n.url("secure", "/api/status"), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// gateStatus is the status of n's gate for token (0 on a transport error).
func (n *clusterNode) gateStatus(token string) int {
	resp, err := n.gate(n.hc, token)
	if err != nil {
		return 0
	}
	return resp.StatusCode
}

// revoke revokes a kuma token at n's revocation endpoint (RFC 7009).
func (n *clusterNode) revoke(t *testing.T, token string) {
	t.Helper()
	if status, out := form(t, n.hc, n.url("auth", "/api/oidc/revocation"), "kuma", kumaSecret, url.Values{"token": {token}}); status != http.StatusOK {
		t.Fatalf("node %s: revocation: %d %v", n.name, status, out)
	}
}

// until polls check every few milliseconds until it is true or limit has passed, and returns
// how long it took and whether it came true.
func until(limit time.Duration, check func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if check() {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// percentile is the nearest-rank percentile p (0–100) of sorted ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// sortedCopy sorts a copy of ds.
func sortedCopy(ds []time.Duration) []time.Duration {
	out := slices.Clone(ds)
	slices.Sort(out)
	return out
}

// jwks reads n's published key set, its keys sorted by key id, re-encoded for comparison.
func (n *clusterNode) jwks(t *testing.T) (string, []string) {
	t.Helper()
	resp, err := n.hc.Get(n.url("auth", "/jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("node %s: JWKS: %d %v", n.name, resp.StatusCode, err)
	}
	slices.SortFunc(set.Keys, func(a, b map[string]any) int { return strings.Compare(fmt.Sprint(a["kid"]), fmt.Sprint(b["kid"])) })
	kids := make([]string, 0, len(set.Keys))
	for _, k := range set.Keys {
		kids = append(kids, fmt.Sprint(k["kid"]))
	}
	out, _ := json.Marshal(set.Keys)
	return string(out), kids
}

// exchangeCode redeems a code of the gw client at n without failing the test (for goroutines).
func (n *clusterNode) exchangeCode(hc *http.Client, code, verifier string) (int, map[string]any, error) {
	return n.grant(hc, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirectURI("gw")}, "code_verifier": {verifier}})
}

// idToken signs john in through app's code flow on n (the browser v goes to n) and returns the
// ID token the code brings, with the request's nonce.
func (n *clusterNode) idToken(t *testing.T, v *visitor) (raw, nonce string) {
	t.Helper()
	code, ar := authCode(t, v, n, "app", url.Values{"scope": {"openid profile"}})
	status, out, err := n.tokenEndpoint(n.hc, "app", appSecret, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirectURI("app")}, "code_verifier": {ar.verifier}})
	raw, _ = out["id_token"].(string)
	if err != nil || status != http.StatusOK || raw == "" {
		t.Fatalf("node %s: app's code exchange: %d %v %v", n.name, status, out, err)
	}
	return raw, ar.nonce
}

// refresh uses a refresh token of the gw client at n.
func (n *clusterNode) refresh(t *testing.T, rt string) (int, map[string]any) {
	t.Helper()
	status, out, err := n.grant(n.hc, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if err != nil {
		t.Fatalf("node %s: refresh: %v", n.name, err)
	}
	return status, out
}

// grant posts v to n's token endpoint as the gw client.
func (n *clusterNode) grant(hc *http.Client, v url.Values) (int, map[string]any, error) {
	return n.tokenEndpoint(hc, "gw", gwSecret, v)
}

// tokenEndpoint posts v to n's token endpoint with client's Basic credentials and decodes the
// JSON answer, without failing the test.
func (n *clusterNode) tokenEndpoint(hc *http.Client, client, secret string, v url.Values) (int, map[string]any, error) {
	req, _ := http.NewRequest(http.MethodPost, n.url("auth", "/api/oidc/token"), strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, secret)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &out); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("not JSON: %.200s", body)
	}
	return resp.StatusCode, out, nil
}

// gwCode takes a browser through gw's authorization request at node n, for a token of the
// gateway with a refresh token, and returns the code with the request (its verifier).
func gwCode(t *testing.T, v *visitor, n *clusterNode) (string, authRequest) {
	t.Helper()
	return authCode(t, v, n, "gw", url.Values{"scope": {"authelia.bearer.authz offline_access"},
		"audience": {n.url("secure", "/")}, "response_mode": {"form_post"}})
}

// authCode takes a browser through client's authorization request (q added to it) at node n,
// signing in as john and accepting consent when asked, and returns the code with the request.
func authCode(t *testing.T, v *visitor, n *clusterNode, client string, q url.Values) (string, authRequest) {
	t.Helper()
	a := n.on(t).authURL(client, q)
	target := a.url
	if client == "gw" { // it must push its requests (RFC 9126)
		u, _ := url.Parse(a.url)
		status, out := form(t, n.hc, n.url("auth", "/api/oidc/pushed-authorization-request"), client, gwSecret, u.Query())
		uri, _ := out["request_uri"].(string)
		if status != http.StatusCreated || uri == "" {
			t.Fatalf("node %s: gw's pushed authorization request: %d %v", n.name, status, out)
		}
		target = n.url("auth", "/api/oidc/authorization?"+url.Values{"client_id": {client}, "request_uri": {uri}}.Encode())
	}
	st := v.authorize(target)
	if st.signIn {
		st = v.signInAt(st, "john", "pw-john")
	}
	if st.consent != nil {
		st = v.answerConsent(st, "accept", false)
	}
	cb := st.callback()
	if cb.Get("code") == "" || cb.Get("state") != a.state {
		t.Fatalf("node %s: %s's authorization request: %s", n.name, client, st)
	}
	return cb.Get("code"), a
}

// basicStatus calls the protected site on n with Basic credentials from the loopback address
// from.
func (n *clusterNode) basicStatus(t *testing.T, from, user, pass string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.url("secure", "/basic"), nil)
	req.SetBasicAuth(user, pass)
	resp, err := n.client(from).Do(req)
	if err != nil {
		t.Fatalf("node %s: Basic from %s: %v", n.name, from, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// errorLines are the last lines of n's log at level error (for a failure's message: what the
// node said when it answered 500).
func (n *clusterNode) errorLines() string {
	var out []string
	for _, line := range strings.Split(n.srv.log.String(), "\n") {
		if strings.Contains(line, `"level":"error"`) {
			out = append(out, line)
		}
	}
	return strings.Join(out[max(0, len(out)-3):], "\n")
}
