package e2e

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// usersFile writes a users file whose users all have the password "pw-<name>".
func usersFile(t *testing.T, path string, entries map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("users:\n")
	for name, extra := range entries {
		out, errOut, code := command(t, "pw-"+name+"\n", "hash", "--algorithm", "pbkdf2-sha512", "--iterations", "100000")
		if code != 0 {
			t.Fatalf("hash: %s", errOut)
		}
		fmt.Fprintf(&b, "  %s:\n    password: %q\n%s", name, strings.TrimSpace(strings.TrimPrefix(out, "Digest: ")), extra)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func basic(user, pass string) map[string]string {
	return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
}

// People from the users file call protected sites with Basic credentials: the rules see their
// user and groups, the upstream gets Remote-User/-Groups/-Email/-Name, a guesser from one address
// is banned there only, and an edit of the file takes effect while a bad edit is ignored.
func TestBasicCredentialsFromTheUsersFile(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.yml")
	base := map[string]string{
		"john": "    displayname: John Doe\n    email: [john@example.com, jd@example.org]\n    groups: [dev, admins]\n",
		"jane": "    groups: [ops]\n",
		"old":  "    groups: [dev]\n    disabled: true\n",
		"ann":  "    groups: [dev]\n",
	}
	usersFile(t, users, base)
	h := &hardened{t: t, adminPort: freePort(t), httpPort: freePort(t), up: newRecorder(t)}
	cf := fmt.Sprintf(`{
	admin localhost:%[1]d
	http_port %[2]d
	oidc {
		issuer http://auth.localhost:%[2]d
		storage %[3]s
		users_file %[4]s
		regulation {
			max_retries 3
			find_time 2m
			ban_time 5m
		}
		access_control {
			default_policy deny
			rule {
				domain basic.localhost
				resources "^/two"
				subject user:john
				policy two_factor
			}
			rule {
				domain basic.localhost
				subject group:dev
				policy one_factor
			}
		}
	}
}
http://auth.localhost:%[2]d {
	oidc_provider
}
http://basic.localhost:%[2]d {
	oidc_auth
	reverse_proxy %[5]s
}
`, h.adminPort, h.httpPort, filepath.Join(dir, "store"), users, strings.TrimPrefix(h.up.srv.URL, "http://"))
	h.s = newServer(t, cf, h.adminPort, h.httpPort)
	h.s.readyURL = fmt.Sprintf("http://auth.localhost:%d/.well-known/openid-configuration", h.httpPort)
	h.s.start()
	host := fmt.Sprintf("basic.localhost:%d", h.httpPort)

	resp, rec := h.raw("", "GET", host, "/x", mergeHeaders(basic("john", "pw-john"), map[string]string{"Remote-Groups": "spoofed"}), "")
	if resp.StatusCode != 200 {
		t.Fatalf("john with his password: %d", resp.StatusCode)
	}
	hdr := rec["headers"].(map[string]any)
	if _, leaked := hdr["Authorization"]; leaked {
		t.Error("the user's Basic credentials reached the upstream")
	}
	for k, want := range map[string]string{"Remote-User": "john", "Remote-Groups": "dev,admins", "Remote-Email": "john@example.com", "Remote-Name": "John Doe"} {
		if got, _ := hdr[k].([]any); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s = %v, want %q", k, hdr[k], want)
		}
	}
	for _, c := range []struct {
		user, pass, path string
		want             int
	}{
		{"john", "wrong", "/x", 401},
		{"jane", "pw-jane", "/x", 403},   // not in dev
		{"john", "pw-john", "/two", 403}, // Basic is one factor
		{"old", "pw-old", "/x", 401},     // disabled
		{"nobody", "pw-nobody", "/x", 401},
	} {
		resp, _ := h.raw("", "GET", host, c.path, basic(c.user, c.pass), "")
		if resp.StatusCode != c.want {
			t.Errorf("%s on %s: %d, want %d", c.user, c.path, resp.StatusCode, c.want)
		}
		if c.want == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s: challenge %q, want Basic", c.user, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if resp, _ := h.raw("", "GET", host, "/x", map[string]string{"Authorization": "Basic !!!"}, ""); resp.StatusCode != 401 {
		t.Errorf("malformed Basic credentials: %d, want 401", resp.StatusCode)
	}

	// a guesser at 127.0.0.2 is banned after 3 failures, even with the right password; john at
	// 127.0.0.3 is not
	for i := 0; i < 3; i++ {
		h.raw("127.0.0.2", "GET", host, "/x", basic("john", fmt.Sprintf("guess-%d", i)), "")
	}
	if resp, _ := h.raw("127.0.0.2", "GET", host, "/x", basic("john", "pw-john"), ""); resp.StatusCode != 401 {
		t.Errorf("the banned address with the right password: %d, want 401", resp.StatusCode)
	}
	if resp, _ := h.raw("127.0.0.3", "GET", host, "/x", basic("john", "pw-john"), ""); resp.StatusCode != 200 {
		t.Errorf("john from another address while a guesser is banned: %d, want 200", resp.StatusCode)
	}

	// simultaneous guesses cannot slip past the limit: of 40 at once from one address, at most
	// max_retries get a password check, the rest are refused as banned
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			h.raw("127.0.0.4", "GET", host, "/x", basic("jane", fmt.Sprintf("guess-%d", i)), "")
		}(i)
	}
	wg.Wait()
	checked := `"remote_ip":"127.0.0.4","user":"jane","reason":"wrong credentials"`
	for deadline := time.Now().Add(5 * time.Second); strings.Count(h.s.log.String(), `"remote_ip":"127.0.0.4"`) < 40 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if n := strings.Count(h.s.log.String(), checked); n == 0 || n > 3 {
		t.Errorf("%d of 40 simultaneous guesses got a password check, want 1 to 3", n)
	}

	// a script that opens many connections at once with its right password is not banned:
	// identical attempts share one check and count once
	var okCount atomic.Int32
	var wg2 sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			if resp, _ := h.raw("127.0.0.6", "GET", host, "/x", basic("ann", "pw-ann"), ""); resp.StatusCode == 200 {
				okCount.Add(1)
			}
		}()
	}
	wg2.Wait()
	if n := okCount.Load(); n != 20 {
		t.Errorf("%d of 20 simultaneous first requests with the right password got in, want all", n)
	}

	// a guesser who hangs up before the answer still has every guess counted (the checks ran):
	// after three hang-ups, the right password from that address is refused
	for i := 0; i < 3; i++ {
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}}).Dial("tcp", fmt.Sprintf("127.0.0.1:%d", h.httpPort))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\n\r\n", host, basic("john", fmt.Sprintf("hangup-%d", i))["Authorization"])
		time.Sleep(5 * time.Millisecond)
		c.Close()
	}
	// the checks finish after the callers left: wait for the third to ban the address's pair
	for deadline := time.Now().Add(10 * time.Second); !bannedIn(h.s.log.String(), "127.0.0.5") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if resp, _ := h.raw("127.0.0.5", "GET", host, "/x", basic("john", "pw-john"), ""); resp.StatusCode != 401 {
		t.Errorf("the right password after three hung-up guesses from one address: %d, want 401 (banned)", resp.StatusCode)
	}

	// an edit takes effect; a bad edit keeps the last good set
	withNew := map[string]string{"newbie": "    groups: [dev]\n"}
	for k, v := range base {
		withNew[k] = v
	}
	usersFile(t, users, withNew)
	// wait for the reload (polling with the new user would count failures and ban the pair)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(h.s.log.String(), "users file reloaded") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if resp, _ := h.raw("127.0.0.3", "GET", host, "/x", basic("newbie", "pw-newbie"), ""); resp.StatusCode != 200 {
		t.Fatalf("a user added to the file: %d, want 200", resp.StatusCode)
	}
	if err := os.WriteFile(users, []byte("users:\n  john:\n    password: broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(h.s.log.String(), "keeping the last good version") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(h.s.log.String(), `user \"john\"`) {
		t.Errorf("the bad edit was not logged with the user at fault:\n%s", h.s.log.String())
	}
	if resp, _ := h.raw("127.0.0.3", "GET", host, "/x", basic("newbie", "pw-newbie"), ""); resp.StatusCode != 200 {
		t.Errorf("after a bad edit: %d, want the last good set to hold", resp.StatusCode)
	}
	if strings.Contains(h.s.log.String(), "pw-john") {
		t.Error("a password reached the log")
	}
}

func mergeHeaders(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// bannedIn reports whether log has the line of a ban of sign-in attempts from ip.
func bannedIn(log, ip string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "sign-in attempts banned") && strings.Contains(line, `"remote_ip":"`+ip+`"`) {
			return true
		}
	}
	return false
}
