package audience

import (
	"net/url"
	"testing"
)

func TestMatches(t *testing.T) {
	cases := []struct {
		entry, target string
		want          bool
	}{
		{"https://secure.example.com/", "https://secure.example.com/", true},
		{"https://secure.example.com/", "https://secure.example.com/anything?x=1", true},
		{"https://secure.example.com", "https://secure.example.com/x", true},
		{"https://SECURE.example.com:443/", "https://secure.example.com/x", true},
		{"http://secure.example.com/", "http://secure.example.com:80/x", true},
		{"https://secure.example.com/", "https://secure.example.com./x", true},
		{"https://secure.example.com./", "https://secure.example.com/x", true},
		{"https://secure.example.com/", "http://secure.example.com/", false},
		{"https://secure.example.com/", "https://secure.example.com:8443/", false},
		{"https://secure.example.com:8443/", "https://secure.example.com:8443/x", true},
		{"https://secure.example.com/", "https://evil.example.com/", false},
		{"https://secure.example.com/", "https://secure.example.com.evil.com/", false},
		{"https://host/api", "https://host/api", true},
		{"https://host/api", "https://host/api/x", true},
		{"https://host/api", "https://host/apix", false},
		{"https://host/api/", "https://host/api", false},
		{"https://host/api?q=1", "https://host/api/x", true},
		{"https://[::1]:8443/", "https://[::1]:8443/x", true},
		{"https://[::1]/", "https://[::1]:443/x", true},
	}
	for _, c := range cases {
		e, _ := url.Parse(c.entry)
		tg, _ := url.Parse(c.target)
		if got := Matches(e, tg); got != c.want {
			t.Errorf("Matches(%s, %s) = %v, want %v", c.entry, c.target, got, c.want)
		}
	}
}

func TestSplitHost(t *testing.T) {
	for in, want := range map[string][2]string{
		"Secure.Example.com":      {"secure.example.com", ""},
		"secure.example.com:8443": {"secure.example.com", "8443"},
		"secure.example.com.":     {"secure.example.com", ""},
		"Secure.Example.com.:443": {"secure.example.com", "443"},
		"[::1]:8080":              {"::1", "8080"},
		"[::1]":                   {"::1", ""},
		"127.0.0.1:80":            {"127.0.0.1", "80"},
	} {
		h, p := SplitHost(in)
		if h != want[0] || p != want[1] {
			t.Errorf("SplitHost(%q) = %q, %q; want %q, %q", in, h, p, want[0], want[1])
		}
	}
}

func TestCheckPath(t *testing.T) {
	refused := []string{
		"/api/../admin", "/api/%2e%2e/admin", "/api/%2E%2E/admin", "/api/..%2fadmin", "/api/..%2Fadmin",
		"/api/.%2e/admin", "/api/./x", "/api/%2e/x", "/..", "/.", "/api/..;/admin", "/api/..;jsessionid=1/admin",
		"/api/.;x/y", "/api%2fadmin", "/api%5cadmin", `/api\admin`, "/api/%00", "/api/\x00", "/api/%0a",
		"/api/%252e%252e/admin", "/api/%252fadmin", "/api/%255c", "/api/%2500", "/api/%zz",
		// double and triple encodings with the hex digits encoded too
		"/api/%25%32%65%25%32%65/admin", "/api/%252%65%252%65/admin", "/api/%25%32e%25%32e/admin",
		"/api/..%25%32%66admin", "/api/..%252%66admin", "/api/..%25%35%63admin", "/api/%25%30%30",
		"/api/%25252e%25252e/x", "/api/%2525252e%2525252e/x",
		// overlong UTF-8 for "." and "/", and invalid UTF-8
		"/api/%c0%ae%c0%ae/admin", "/api/..%c0%afadmin", "/api/%ff",
	}
	for _, p := range refused {
		if _, err := CheckPath(p); err == nil {
			t.Errorf("CheckPath(%q) accepted", p)
		}
	}
	accepted := map[string]string{
		"/":              "/",
		"/api/x":         "/api/x",
		"/.well-known/x": "/.well-known/x",
		"/api/..x/y":     "/api/..x/y",
		"/a/b.c/d..e":    "/a/b.c/d..e",
		"/caf%C3%A9":     "/café",
		"/a%20b":         "/a b",
		"/a;b=c/d":       "/a;b=c/d",
		"//double":       "//double",
		"/file%2ehtml":   "/file.html",
	}
	for in, want := range accepted {
		got, err := CheckPath(in)
		if err != nil || got != want {
			t.Errorf("CheckPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestAllowedAndParseEntry(t *testing.T) {
	allowed := []string{"https://host/api", "urn:x"}
	for req, want := range map[string]bool{"https://host/api/v1": true, "https://host/apix": false, "urn:x": true, "urn:y": false, "https://HOST/api": true} {
		if got := Allowed(allowed, req); got != want {
			t.Errorf("Allowed(%q) = %v", req, got)
		}
	}
	for _, bad := range []string{"host/api", "ftp://host/", "https://host/?q", "https://host/#f", "https://u@host/", "https://host/a/../b"} {
		if _, err := ParseEntry(bad); err == nil {
			t.Errorf("ParseEntry(%q) accepted", bad)
		}
	}
}

func BenchmarkCheckPath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CheckPath("/api/v1/status/monitors/42"); err != nil {
			b.Fatal(err)
		}
	}
}
