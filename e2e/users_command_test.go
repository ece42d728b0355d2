package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `caddy oidc users` edits the users file of a running server in place: an added person signs in
// once the server has re-read the file (it polls; no reload), a changed password and a disabled
// flag take effect the same way, the rest of the file stays as it was written, and misuse exits
// 2 while failures exit 1, leaving the file alone.
func TestUsersCommand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "users.yml")
	out, errOut, code := command(t, "pw-john\n", "hash", "--algorithm", "pbkdf2-sha512", "--iterations", "100000")
	johnDigest, ok := strings.CutPrefix(strings.TrimSpace(out), "Digest: ")
	if code != 0 || !ok {
		t.Fatalf("hash: exit %d %q %s", code, out, errOut)
	}
	const trailer = "\n# people added by caddy oidc users go above\n"
	original := "# The people of the e2e site.\nusers:\n  john:   # the first one\n    displayname: 'John Doe'\n    password: \"" +
		johnDigest + "\"\n    groups: [dev, admins]\n" + trailer
	if err := os.WriteFile(file, []byte(original), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o640); err != nil {
		t.Fatal(err)
	}

	h := &hardened{t: t, adminPort: freePort(t), httpPort: freePort(t), up: newRecorder(t)}
	cf := fmt.Sprintf(`{
	admin localhost:%[1]d
	http_port %[2]d
	log {
		level INFO
	}
	oidc {
		issuer http://auth.localhost:%[2]d
		storage %[3]s
		users_file %[4]s
		access_control {
			default_policy deny
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
`, h.adminPort, h.httpPort, filepath.Join(dir, "store"), file, strings.TrimPrefix(h.up.srv.URL, "http://"))
	h.s = newServer(t, cf, h.adminPort, h.httpPort)
	h.s.readyURL = fmt.Sprintf("http://auth.localhost:%d/.well-known/openid-configuration", h.httpPort)
	h.s.start()
	host := fmt.Sprintf("basic.localhost:%d", h.httpPort)
	status := func(user, pass string) int {
		resp, _ := h.raw("127.0.0.5", "GET", host, "/x", basic(user, pass), "")
		return resp.StatusCode
	}
	// run runs a users command that must succeed, and waits until the server has re-read the
	// file (guessing with requests instead would count failures against the user).
	run := func(stdin string, args ...string) string {
		t.Helper()
		reloads := strings.Count(h.s.log.String(), "users file reloaded")
		out, errOut, code := command(t, stdin, append([]string{"users"}, args...)...)
		if code != 0 {
			t.Fatalf("caddy oidc users %v: exit %d: %s", args, code, errOut)
		}
		if strings.Contains(out+errOut, "pw-") {
			t.Fatalf("caddy oidc users %v printed the password", args)
		}
		for deadline := time.Now().Add(5 * time.Second); strings.Count(h.s.log.String(), "users file reloaded") == reloads; {
			if time.Now().After(deadline) {
				t.Fatalf("the server did not re-read the users file within 5s of caddy oidc users %v:\n%s", args, h.s.log.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		return out
	}

	if got := status("newbie", "pw-newbie"); got != 401 {
		t.Fatalf("newbie before being added: %d, want 401", got)
	}
	out = run("pw-newbie\n", "add", "newbie", "--file", file, "--displayname", "New Bie", "--email", "newbie@example.com", "--group", "dev")
	if !strings.Contains(out, "Added newbie") {
		t.Errorf("add printed %q", out)
	}
	data, _ := os.ReadFile(file)
	if !strings.HasPrefix(string(data), strings.TrimSuffix(original, trailer)+"  newbie:\n    displayname: New Bie\n    password: \"$argon2id$v=19$m=65536,t=3,p=4$") ||
		!strings.HasSuffix(string(data), "    email: newbie@example.com\n    groups: [dev]\n"+trailer) {
		t.Errorf("the file after add:\n%s\nwant newbie after john and before the trailing comment", data)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("the file's mode after add: %v %v, want 0640 as before", fi.Mode(), err)
	}
	resp, rec := h.raw("127.0.0.5", "GET", host, "/x", basic("newbie", "pw-newbie"), "")
	if resp.StatusCode != 200 {
		t.Fatalf("newbie after being added: %d, want 200", resp.StatusCode)
	}
	hdr := rec["headers"].(map[string]any)
	for k, want := range map[string]string{"Remote-User": "newbie", "Remote-Groups": "dev", "Remote-Email": "newbie@example.com", "Remote-Name": "New Bie"} {
		if got, _ := hdr[k].([]any); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s = %v, want %q", k, hdr[k], want)
		}
	}

	// passwd: the new password works, the old one no longer does; only that line changed
	before, _ := os.ReadFile(file)
	run("pw-newbie-2\n", "passwd", "newbie", "--file", file, "--algorithm", "pbkdf2-sha512")
	after, _ := os.ReadFile(file)
	if b, a := strings.Split(string(before), "\n"), strings.Split(string(after), "\n"); len(b) != len(a) {
		t.Errorf("passwd changed the number of lines:\n%s", after)
	} else {
		for i := range b {
			if b[i] != a[i] && !strings.HasPrefix(a[i], "    password: \"$pbkdf2-sha512$310000$") {
				t.Errorf("passwd changed line %d: %q → %q", i+1, b[i], a[i])
			}
		}
	}
	if got := status("newbie", "pw-newbie"); got != 401 {
		t.Errorf("the old password after passwd: %d, want 401", got)
	}
	if got := status("newbie", "pw-newbie-2"); got != 200 {
		t.Errorf("the new password after passwd: %d, want 200", got)
	}

	// disable, then enable again
	run("", "disable", "newbie", "--file", file)
	if data, _ := os.ReadFile(file); !strings.Contains(string(data), "  newbie:\n    disabled: true\n    displayname: New Bie\n") {
		t.Errorf("the file after disable:\n%s", data)
	}
	if got := status("newbie", "pw-newbie-2"); got != 401 {
		t.Errorf("newbie disabled: %d, want 401", got)
	}
	if out, _, code := command(t, "", "users", "disable", "newbie", "--file", file); code != 0 || !strings.Contains(out, "already") {
		t.Errorf("disabling again: exit %d %q", code, out)
	}
	run("", "disable", "newbie", "--enable", "--file", file)
	if got := status("newbie", "pw-newbie-2"); got != 200 {
		t.Errorf("newbie enabled again: %d, want 200", got)
	}
	run("", "disable", "john", "--file", file)
	run("", "enable", "john", "--file", file)
	if data, _ := os.ReadFile(file); !strings.HasPrefix(string(data), "# The people of the e2e site.\nusers:\n  john:   # the first one\n    disabled: false\n    displayname: 'John Doe'\n    password: \""+johnDigest+"\"\n    groups: [dev, admins]\n") {
		t.Errorf("john's entry after disable and enable:\n%s", data)
	}

	// list: every person, never a digest
	out, errOut, code = command(t, "", "users", "list", "--file", file, "--json")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, errOut)
	}
	var list []struct {
		Name, DisplayName string
		Emails, Groups    []string
		Disabled          bool
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 || list[0].Name != "john" || list[1].Name != "newbie" ||
		list[1].DisplayName != "New Bie" || strings.Join(list[1].Emails, ",") != "newbie@example.com" || strings.Join(list[0].Groups, ",") != "dev,admins" || list[1].Disabled {
		t.Errorf("list --json: %v %s", err, out)
	}
	text, _, code := command(t, "", "users", "list", "--file", file)
	if code != 0 || !strings.Contains(text, "newbie") || !strings.Contains(text, "John Doe") {
		t.Errorf("list: exit %d %q", code, text)
	}
	for _, o := range []string{out, text} {
		if strings.Contains(o, "$") || strings.Contains(o, "password") {
			t.Errorf("list printed a digest:\n%s", o)
		}
	}

	// misuse exits 2 and failures exit 1; the file is left alone
	before, _ = os.ReadFile(file)
	for _, c := range []struct {
		stdin string
		args  []string
		want  int
	}{
		{"pw\n", []string{"passwd", "nobody", "--file", file}, 2},
		{"pw\n", []string{"passwd", "John", "--file", file}, 2},
		{"", []string{"disable", "nobody", "--file", file}, 2},
		{"pw\n", []string{"add", "x"}, 2},
		{"", []string{"list"}, 2},
		{"", []string{"list", "--file", file, "stray"}, 2},
		{"pw\n", []string{"add", "--file", file}, 2},
		{"pw\n", []string{"add", "x", "y", "--file", file}, 2},
		{"pw\n", []string{"add", "a:b", "--file", file}, 2},
		{"pw\n", []string{"add", "x", "--file", file, "--email", "not an address"}, 2},
		{"pw\n", []string{"add", "x", "--file", file, "--algorithm", "md5"}, 2},
		{"pw\n", []string{"add", "x", "--file", file, "--memory", "4194304"}, 2},
		{"pw\n", []string{"passwd", "john", "--file", file, "--algorithm", "pbkdf2", "--iterations", "20000000"}, 2},
		{"pw\n", []string{"passwd", "john", "--file", file, "--algorithm", "bcrypt", "--cost", "17"}, 2},
		{"", []string{"add", "x", "--file", file}, 2},
		{"", []string{"add", "x", "--file", file, "--nope"}, 2},
		{"", []string{"frob"}, 2},
		{"", []string{}, 2},
		{"pw\n", []string{"add", "newbie", "--file", file}, 1},
		{"pw\n", []string{"add", "NEWBIE", "--file", file}, 1},
		{"", []string{"list", "--file", filepath.Join(dir, "missing.yml")}, 1},
		{"pw\n", []string{"passwd", "john", "--file", filepath.Join(dir, "missing.yml")}, 1},
		{"pw\n", []string{"add", "x", "--file", dir}, 1},
	} {
		out, errOut, code := command(t, c.stdin, append([]string{"users"}, c.args...)...)
		if code != c.want {
			t.Errorf("caddy oidc users %v: exit %d, want %d: %s%s", c.args, code, c.want, out, errOut)
		}
	}
	if now, _ := os.ReadFile(file); string(now) != string(before) {
		t.Errorf("a refused command changed the file:\n%s", now)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.yml")); err == nil {
		t.Error("passwd created a missing file")
	}
	// a file that does not read as a users file is not edited
	broken := filepath.Join(dir, "broken.yml")
	if err := os.WriteFile(broken, []byte("users:\n  john: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, code := command(t, "pw\n", "users", "add", "x", "--file", broken); code != 1 {
		t.Errorf("add to a broken file: exit %d, want 1", code)
	}

	// a missing file is created, mode 0600
	fresh := filepath.Join(dir, "fresh.yml")
	if _, errOut, code := command(t, "pw-first\n", "users", "add", "first", "--file", fresh, "--algorithm", "bcrypt", "--cost", "10"); code != 0 {
		t.Fatalf("add to a missing file: exit %d: %s", code, errOut)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the new file: %v %v, want mode 0600", fi, err)
	}
	if data, _ := os.ReadFile(fresh); !strings.HasPrefix(string(data), "users:\n  first:\n    password: \"$2b$10$") {
		t.Errorf("the new file:\n%s", data)
	}
	if strings.Contains(h.s.log.String(), "pw-newbie") {
		t.Error("a password reached the server's log")
	}
}
