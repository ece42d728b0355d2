package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// command runs `caddy oidc <args>` with stdin and returns stdout, stderr and the exit status.
func command(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(caddyBin, append([]string{"oidc"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errOut.String(), 0
	case errors.As(err, &exit):
		return out.String(), errOut.String(), exit.ExitCode()
	}
	t.Fatalf("running caddy oidc %v: %v", args, err)
	return "", "", -1
}

// wrongSecret differs from secret in its first byte, which every algorithm reads (bcrypt ignores
// what follows 72 bytes).
func wrongSecret(secret string) string {
	if secret[0] == 'x' {
		return "y" + secret[1:]
	}
	return "x" + secret[1:]
}

// commandsCaddyfile has one client per digest, a site guarded by rules on them, a bypassed site
// and a site without the gate.
const commandsCaddyfile = `{
	admin localhost:{ADMIN}
	http_port {HTTP}
	oidc {
		issuer http://auth.localhost:{HTTP}
		signing_key {
			key_file {RSAKEY}
		}
		signing_key {
			algorithm ES256
			key_file {KEY}
		}
		{CLIENTS}
		access_control {
			default_policy deny
			rule {
				domain api.localhost
				resources "^/admin([/?].*)?$"
				policy deny
			}
			rule {
				domain api.localhost
				subject oauth2:client:c-argon2id
				policy one_factor
			}
			rule {
				domain api.localhost
				subject oauth2:client:c-pbkdf2-sha512
				methods GET HEAD
				policy one_factor
			}
			rule {
				domain public.localhost
				policy bypass
			}
		}
	}
}
http://auth.localhost:{HTTP} {
	oidc_provider
}
http://api.localhost:{HTTP} {
	oidc_auth
	respond "api {http.auth.user.id}"
}
http://public.localhost:{HTTP} {
	oidc_auth
	respond "public"
}
http://open.localhost:{HTTP} {
	respond "open"
}
http://mixed.localhost:{HTTP} {
	handle /public/* {
		respond "public part"
	}
	handle {
		oidc_auth
		respond "mixed"
	}
}
http://routed.localhost:{HTTP} {
	route {
		respond /early/* "early"
		oidc_auth
		respond "routed"
	}
}
http://:{HTTP} {
	respond "catch-all"
}
`

// The digests `caddy oidc hash` makes are read by the provider: a client configured with each
// gets a token with its secret and none with another; keygen's key is served under the key id
// it printed; check-policy answers what the running gate does.
func TestOperatorCommands(t *testing.T) {
	dir := t.TempDir()

	// keygen: a 0600 PEM, the key id printed, no silent overwrite, bad sizes are usage errors
	keyFile := filepath.Join(dir, "es256.pem")
	out, errOut, code := command(t, "", "keygen", "--algorithm", "ES256", "--out", keyFile, "--json")
	if code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, errOut)
	}
	var kg struct {
		KeyID     string `json:"key_id"`
		Algorithm string `json:"algorithm"`
	}
	if err := json.Unmarshal([]byte(out), &kg); err != nil || kg.KeyID == "" || kg.Algorithm != "ES256" {
		t.Fatalf("keygen output %q: %v", out, err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	before, _ := os.ReadFile(keyFile)
	if _, errOut, code := command(t, "", "keygen", "--out", keyFile); code != 1 || !strings.Contains(errOut, "--force") {
		t.Fatalf("keygen over an existing file: exit %d %q, want 1 naming --force", code, errOut)
	}
	if after, _ := os.ReadFile(keyFile); !bytes.Equal(before, after) {
		t.Fatal("keygen replaced an existing key without --force")
	}
	// --force replaces a symlink by the key file; the file it pointed to is left alone
	victim := filepath.Join(dir, "victim.txt")
	if err := os.WriteFile(victim, []byte("victim"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.pem")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	if _, _, code := command(t, "", "keygen", "--out", link); code != 1 {
		t.Fatalf("keygen onto a symlink without --force: exit %d, want 1", code)
	}
	if _, errOut, code := command(t, "", "keygen", "--out", link, "--force"); code != 0 {
		t.Fatalf("keygen --force onto a symlink: exit %d: %s", code, errOut)
	}
	if data, _ := os.ReadFile(victim); string(data) != "victim" {
		t.Fatal("keygen --force wrote through a symlink")
	}
	if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keygen --force: %v %v, want a regular 0600 file", fi.Mode(), err)
	}
	rsaFile := filepath.Join(dir, "rs256.pem")
	out, errOut, code = command(t, "", "keygen", "--out", rsaFile, "--bits", "3072")
	rsaKid, ok := strings.CutPrefix(strings.TrimSpace(out[strings.Index(out, "Key ID: "):]), "Key ID: ")
	if code != 0 || !ok || !strings.HasSuffix(rsaKid, "-rs256") {
		t.Fatalf("keygen RS256: exit %d %q %s", code, out, errOut)
	}
	if _, _, code := command(t, "", "keygen", "--out", filepath.Join(dir, "small.pem"), "--bits", "1024"); code != 2 {
		t.Fatalf("keygen --bits 1024: exit %d, want 2", code)
	}

	// hash: every algorithm, a random secret and one from stdin
	type hashed struct{ id, secret, digest string }
	var clients []hashed
	for _, alg := range []string{"argon2id", "pbkdf2-sha512", "scrypt", "bcrypt"} {
		out, errOut, code := command(t, "", "hash", "--algorithm", alg, "--random", "--json")
		if code != 0 {
			t.Fatalf("hash %s: exit %d: %s", alg, code, errOut)
		}
		var res struct{ Secret, Digest string }
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Secret) != 72 || res.Digest == "" {
			t.Fatalf("hash %s output %q: %v", alg, out, err)
		}
		clients = append(clients, hashed{"c-" + alg, res.Secret, res.Digest})
	}
	const piped = "a secret with spaces+and%signs"
	out, errOut, code = command(t, piped+"\n", "hash", "--algorithm", "pbkdf2", "--iterations", "100000")
	digest, ok := strings.CutPrefix(strings.TrimSpace(out), "Digest: ")
	if code != 0 || !ok || !strings.HasPrefix(digest, "$pbkdf2-sha512$100000$") {
		t.Fatalf("hash from stdin: exit %d, %q %s", code, out, errOut)
	}
	clients = append(clients, hashed{"c-piped", piped, digest})
	// bcrypt ignores what follows 72 bytes: a longer secret is refused, not silently cut
	if _, errOut, code := command(t, strings.Repeat("s", 73), "hash", "--algorithm", "bcrypt"); code != 2 || !strings.Contains(errOut, "72 bytes") {
		t.Errorf("bcrypt with a 73-byte secret: exit %d %q, want 2", code, errOut)
	}
	for _, bad := range [][]string{{"hash", "--algorithm", "md5"}, {"hash"}, {"hash", "--iterations", "-1"}, {"hash", "--memory", "4294968320"}, {"hash", "stray"}, {"hash", "--nope"}, {"nope"}} {
		if _, _, code := command(t, "", bad...); code != 2 {
			t.Errorf("caddy oidc %v: exit %d, want 2 (usage)", bad, code)
		}
	}

	// keys and salts far beyond what an algorithm needs are refused before any hashing
	for flag, value := range map[string]string{"--key-size": "50000000", "--salt-size": "1"} {
		if _, errOut, code := command(t, "a-secret\n", "hash", flag, value); code != 2 || !strings.Contains(errOut, flag) {
			t.Errorf("hash %s %s: exit %d %q, want 2 naming the flag", flag, value, code, errOut)
		}
	}

	var blocks strings.Builder
	for _, c := range clients {
		fmt.Fprintf(&blocks, "client %s {\n\t\t\tsecret %q\n\t\t\tscopes authelia.bearer.authz\n\t\t\taudience http://api.localhost:{HTTP}/\n\t\t\tgrant_types client_credentials\n\t\t\trequested_audience_mode implicit\n\t\t}\n\t\t", c.id, c.digest)
	}
	adminPort, httpPort := freePort(t), freePort(t)
	cf := strings.NewReplacer("{CLIENTS}", blocks.String()).Replace(commandsCaddyfile)
	cf = strings.NewReplacer("{ADMIN}", fmt.Sprint(adminPort), "{HTTP}", fmt.Sprint(httpPort), "{KEY}", keyFile, "{RSAKEY}", rsaFile).Replace(cf)
	s := newServer(t, cf, adminPort, httpPort)
	s.readyURL = fmt.Sprintf("http://auth.localhost:%d/.well-known/openid-configuration", httpPort)
	s.start()
	hc := client()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	base := func(host string) string { return fmt.Sprintf("http://%s.localhost:%d", host, httpPort) }
	tokens := map[string]string{}
	for _, c := range clients {
		cc := clientcredentials.Config{ClientID: c.id, ClientSecret: c.secret, TokenURL: base("auth") + "/api/oidc/token",
			Scopes: []string{"authelia.bearer.authz"}, AuthStyle: oauth2.AuthStyleInHeader}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatalf("%s with the secret hash printed: %v", c.id, err)
		}
		tokens[c.id] = tok.AccessToken
		cc.ClientSecret = wrongSecret(c.secret)
		if _, err := cc.Token(ctx); err == nil {
			t.Fatalf("%s: a wrong secret got a token", c.id)
		}
	}

	// one log line per token issued and refused, naming the client and the grant, never a secret or
	// a token
	scrypt := clients[2]
	if code, _ := form(t, hc, base("auth")+"/api/oidc/revocation", scrypt.id, scrypt.secret, url.Values{"token": {tokens[scrypt.id]}}); code != 200 {
		t.Fatalf("revocation: %d", code)
	}
	last := `"msg":"token revoked","client_id":"` + scrypt.id + `"`
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(s.log.String(), last) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond) // the server's output arrives through a pipe
	}
	log := s.log.String()
	if !strings.Contains(log, last) {
		t.Error("no 'token revoked' line")
	}
	for _, c := range clients {
		if !strings.Contains(log, `"msg":"token issued","client_id":"`+c.id+`","grant_type":"client_credentials"`) {
			t.Errorf("no 'token issued' line for %s", c.id)
		}
		if !strings.Contains(log, `"msg":"token refused","client_id":"`+c.id+`","grant_type":"client_credentials","error":"invalid_client"`) {
			t.Errorf("no 'token refused' line for %s's wrong secret", c.id)
		}
		if strings.Contains(log, c.secret[1:]) || strings.Contains(log, tokens[c.id]) {
			t.Errorf("the log holds %s's secret or token", c.id)
		}
	}

	// what a caller types where a client id goes is not logged unless it names a client: a
	// secret pasted into the user name of Basic credentials stays out of the log
	pasted := clients[0]
	req, _ := http.NewRequest("POST", base("auth")+"/api/oidc/token", strings.NewReader("grant_type=client_credentials&scope="+url.QueryEscape(pasted.secret)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(pasted.id+":"+pasted.secret), "")
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
	}
	for deadline := time.Now().Add(5 * time.Second); strings.Count(s.log.String(), `"client_id":"(unknown)"`) < 2 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(s.log.String(), pasted.secret[1:]) {
		t.Error("a secret pasted into the client id field reached the log")
	}

	// the key keygen printed is the one the provider signs with
	resp, err := hc.Get(base("auth") + "/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
			Alg string `json:"alg"`
		} `json:"keys"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&jwks)
	resp.Body.Close()
	served := map[string]string{}
	for _, k := range jwks.Keys {
		served[k.Kid] = k.Alg
	}
	if len(served) != 2 || served[kg.KeyID] != "ES256" || served[rsaKid] != "RS256" {
		t.Fatalf("JWKS %+v, want the keys keygen printed: %s and %s", jwks.Keys, rsaKid, kg.KeyID)
	}

	// check-policy answers what the running gate does
	cases := []struct {
		method, url, subject string
		want                 int
	}{
		{"GET", base("api") + "/", "oauth2:client:c-argon2id", 200},
		{"GET", base("api") + "/admin/users", "oauth2:client:c-argon2id", 403},
		{"GET", base("api") + "/admin?x=1", "oauth2:client:c-argon2id", 403},
		{"GET", base("api") + "/administrator", "oauth2:client:c-argon2id", 200},
		{"GET", base("api") + "/", "oauth2:client:c-pbkdf2-sha512", 200},
		{"POST", base("api") + "/", "oauth2:client:c-pbkdf2-sha512", 403},
		{"GET", base("api") + "/", "oauth2:client:c-bcrypt", 403},
		{"GET", base("api") + "/", "", 401},
		{"GET", base("api") + "/a/%2e%2e/admin", "oauth2:client:c-argon2id", 400},
		{"delete", base("api") + "/", "oauth2:client:c-pbkdf2-sha512", 400},
		{"GET", base("public") + "/", "", 200},
		{"GET", base("open") + "/", "", 200},
		{"GET", base("mixed") + "/public/x", "", 200},
		{"GET", base("mixed") + "/private", "", 403},
		{"GET", base("routed") + "/early/x", "", 200},
		{"GET", base("routed") + "/late", "", 403},
		{"GET", fmt.Sprintf("http://api.localhost.:%d/admin", httpPort), "", 200},
	}
	for _, c := range cases {
		args := []string{"check-policy", "--config", s.config, "--url", c.url, "--method", c.method, "--json"}
		if c.subject != "" {
			args = append(args, "--subject", c.subject)
		}
		out, errOut, code := command(t, "", args...)
		if code != 0 {
			t.Fatalf("check-policy %s %s: exit %d: %s", c.method, c.url, code, errOut)
		}
		var res struct{ Answer string }
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("check-policy output %q: %v", out, err)
		}
		predicted := map[string]int{"allow": 200, "403": 403, "401": 401, "400": 400}[strings.Fields(res.Answer)[0]]

		req, _ := http.NewRequest(c.method, c.url, nil)
		if c.subject != "" {
			req.Header.Set("Authorization", "Bearer "+tokens[strings.TrimPrefix(c.subject, "oauth2:client:")])
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want || predicted != c.want {
			t.Errorf("%s %s as %q: gate %d, check-policy %q, want %d", c.method, c.url, c.subject, resp.StatusCode, res.Answer, c.want)
		}
	}
	// the metrics count exactly what happened above
	want := map[string]float64{
		`portcullis_token_requests_refused_total{error="invalid_client",grant="client_credentials"}`:      6,
		`portcullis_client_auth_failures_total{reason="wrong_secret"}`:                                    5,
		`portcullis_client_auth_failures_total{reason="unknown_client"}`:                                  1,
		`portcullis_tokens_revoked_total`:                                                                 1,
		`portcullis_gate_decisions_total{answer="allow",policy="one_factor",site="api.localhost"}`:        3,
		`portcullis_gate_decisions_total{answer="forbidden",policy="deny",site="api.localhost"}`:          4,
		`portcullis_gate_decisions_total{answer="unauthorized",policy="one_factor",site="api.localhost"}`: 1,
		`portcullis_gate_decisions_total{answer="bad_request",policy="none",site="api.localhost"}`:        2,
		`portcullis_gate_decisions_total{answer="allow",policy="bypass",site="public.localhost"}`:         1,
		`portcullis_gate_decisions_total{answer="forbidden",policy="deny",site="other"}`:                  2,
		`portcullis_store_gc_runs_total`:                                                                  0,
		`portcullis_bans_total`:                                                                           0,
	}
	for _, c := range clients {
		want[`portcullis_tokens_issued_total{client="`+c.id+`",grant="client_credentials"}`] = 1
	}
	got := scrape(t, hc, adminPort)
	for series, v := range want {
		if got[series] != v {
			t.Errorf("%s = %v, want %v", series, got[series], v)
		}
	}
	for series := range got {
		if _, ok := want[series]; !ok && strings.HasPrefix(series, "portcullis_") && !strings.HasPrefix(series, "portcullis_store_size_bytes") {
			t.Errorf("unexpected series %s = %v", series, got[series])
		}
	}
	if got[`portcullis_store_size_bytes{part="lsm"}`]+got[`portcullis_store_size_bytes{part="vlog"}`] <= 0 {
		t.Error("the store size is not reported")
	}

	// tokens revoke: through the running server's admin API, the client's tokens end at once
	bearerStatus := func(client string) int {
		req, _ := http.NewRequest("GET", base("api")+"/", nil)
		req.Header.Set("Authorization", "Bearer "+tokens[client])
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if bearerStatus("c-argon2id") != 200 || bearerStatus("c-pbkdf2-sha512") != 200 {
		t.Fatal("the tokens do not work before the revocation")
	}
	out, errOut, code = command(t, "", "tokens", "revoke", "--client", "c-argon2id", "--config", s.config, "--json")
	if code != 0 || !strings.Contains(out, `"revoked": 1`) {
		t.Fatalf("tokens revoke: exit %d %q %s", code, out, errOut)
	}
	if got := bearerStatus("c-argon2id"); got != 401 {
		t.Errorf("a revoked client's token (cached by the gate) got %d, want 401", got)
	}
	if got := bearerStatus("c-pbkdf2-sha512"); got != 200 {
		t.Errorf("another client's token got %d after the revocation, want 200", got)
	}
	if out, _, code := command(t, "", "tokens", "revoke", "--client", "c-argon2id", "--address", fmt.Sprintf("localhost:%d", adminPort)); code != 0 || !strings.Contains(out, "Revoked 0 token(s)") {
		t.Errorf("revoking again: exit %d %q", code, out)
	}
	if _, _, code := command(t, "", "tokens", "revoke", "--config", s.config); code != 2 {
		t.Errorf("tokens revoke without --client: exit %d, want 2", code)
	}
	if _, _, code := command(t, "", "tokens", "revoke", "--client", "x", "--address", fmt.Sprintf("localhost:%d", freePort(t))); code != 1 {
		t.Errorf("tokens revoke with no server: exit %d, want 1", code)
	}

	// the human-readable form lists each rule's outcome
	out, _, _ = command(t, "", "check-policy", "--config", s.config, "--url", base("api")+"/", "--subject", "oauth2:client:c-argon2id")
	for _, want := range []string{"no match   deny", "match      one_factor", "Answer: allow"} {
		if !strings.Contains(out, want) {
			t.Errorf("check-policy text lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range [][]string{
		{"check-policy", "--url", base("api") + "/"},
		{"check-policy", "--config", s.config},
		{"check-policy", "--config", s.config, "--url", "ftp://x/"},
		{"check-policy", "--config", s.config, "--url", base("api") + "/", "--subject", "robot:x"},
		{"check-policy", "--config", s.config, "--url", base("api") + "/", "--ip", "nowhere"},
	} {
		if _, _, code := command(t, "", bad...); code != 2 {
			t.Errorf("caddy oidc %v: exit %d, want 2", bad, code)
		}
	}
	if _, _, code := command(t, "", "check-policy", "--config", filepath.Join(dir, "missing"), "--url", base("api")+"/"); code != 1 {
		t.Errorf("check-policy with a missing config: exit %d, want 1", code)
	}
}

// scrape reads the admin endpoint's /metrics into series → value.
func scrape(t *testing.T, hc *http.Client, adminPort int) map[string]float64 {
	t.Helper()
	resp, err := hc.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// Authelia's Uptime-Kuma configuration, imported, runs: the monitor gets a token with its secret
// and reaches the protected site; nothing was left over.
func TestImportAutheliaUptimeKuma(t *testing.T) {
	out, errOut, code := command(t, "", "import-authelia", "--config", "../oidcprovider/importauthelia/testdata/uptime_kuma.yml", "--issuer", "https://auth.example.com")
	if code != 0 {
		t.Fatalf("import: exit %d: %s", code, errOut)
	}
	if strings.Contains(errOut, "not carried over") {
		t.Fatalf("the Uptime-Kuma configuration left something over:\n%s", errOut)
	}
	up := strings.TrimPrefix(echo(t).URL, "http://")
	adminPort, httpPort := freePort(t), freePort(t)
	cf := loopback(out, adminPort, httpPort, map[string]string{"localhost:8080": up}, nil)
	s := newServer(t, cf, adminPort, httpPort)
	s.readyURL = fmt.Sprintf("http://auth.localhost:%d/.well-known/openid-configuration", httpPort)
	s.start()
	hc := client()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	kuma := clientcredentials.Config{ClientID: "uptime-kuma-monitor", ClientSecret: "insecure_secret",
		TokenURL: fmt.Sprintf("http://auth.localhost:%d/api/oidc/token", httpPort), Scopes: []string{"authelia.bearer.authz"}, AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := kuma.Token(ctx)
	if err != nil {
		t.Fatalf("token through the imported config: %v\n%s", err, cf)
	}
	r := get(t, hc, "GET", fmt.Sprintf("http://secure.localhost:%d/status", httpPort), map[string]string{"Authorization": "Bearer " + tok.AccessToken})
	if r.status != 200 || len(r.headers["Remote-Client-Id"]) != 1 || r.headers["Remote-Client-Id"][0] != "uptime-kuma-monitor" {
		t.Fatalf("the monitor through the imported config: %d %v", r.status, r.headers)
	}
	if r := get(t, hc, "GET", fmt.Sprintf("http://secure.localhost:%d/status", httpPort), nil); r.status != 401 {
		t.Fatalf("an anonymous call through the imported config: %d", r.status)
	}
	if _, _, code := command(t, "", "import-authelia"); code != 2 {
		t.Errorf("import-authelia without --config: exit %d, want 2", code)
	}
	if _, _, code := command(t, "", "import-authelia", "--config", filepath.Join(t.TempDir(), "missing.yml")); code != 1 {
		t.Errorf("import-authelia with a missing file: exit %d, want 1", code)
	}
}
