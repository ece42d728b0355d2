package oidcprovider_test

import (
	"strings"
	"testing"
)

// backchannel_logout_uri is checked at `caddy validate`, each mistake named with its client, its
// option and the fix; the valid forms pass.
func TestValidateBackchannelErrors(t *testing.T) {
	with := func(lines string) string { return provider(strings.Replace(app, "}", lines+"\n}", 1)) }
	cases := []struct {
		name, caddyfile, want string
	}{
		{"https", with("backchannel_logout_uri https://app.example.com/bcl?x=1\nbackchannel_logout_session_required true"), ""},
		{"http on 127.0.0.1", with("backchannel_logout_uri http://127.0.0.1:8080/bcl"), ""},
		{"http on ::1", with("backchannel_logout_uri http://[::1]:8080/bcl"), ""},
		{"http on localhost", with("backchannel_logout_uri http://localhost/bcl"), ""},
		{"device client", provider("client tv {\n public\n grant_types urn:ietf:params:oauth:grant-type:device_code\n backchannel_logout_uri https://tv.example.com/bcl\n}"), ""},
		{"public client", provider("client spa {\n public\n redirect_uris https://spa.example.com/cb\n backchannel_logout_uri https://spa.example.com/bcl\n}"), ""},
		{"http elsewhere", with("backchannel_logout_uri http://app.example.com/bcl"), `client app: backchannel_logout_uri: "http://app.example.com/bcl" must use https (http only for localhost and loopback addresses); use https://app.example.com/bcl`},
		{"http on a loopback-looking name", with("backchannel_logout_uri http://127.0.0.1.example.com/bcl"), "must use https"},
		{"fragment", with("backchannel_logout_uri https://app.example.com/bcl#x"), `client app: backchannel_logout_uri: "https://app.example.com/bcl#x" may not carry a fragment`},
		{"relative", with("backchannel_logout_uri /bcl"), `client app: backchannel_logout_uri: "/bcl" is not an absolute URI such as https://app.example.com/backchannel-logout`},
		{"no host", with("backchannel_logout_uri https:///bcl"), "is not an absolute URI"},
		{"other scheme", with("backchannel_logout_uri ftp://app.example.com/bcl"), `"ftp://app.example.com/bcl" must be an https URL`},
		{"user info", with("backchannel_logout_uri https://u:p@app.example.com/bcl"), "may not carry user info"},
		{"session required alone", with("backchannel_logout_session_required true"), "client app: backchannel_logout_session_required: needs backchannel_logout_uri"},
		{"client_credentials client", provider(strings.Replace(kuma, "grant_types", "backchannel_logout_uri https://kuma.example.com/bcl\n\tgrant_types", 1)), "client kuma: backchannel_logout_uri: only a client that signs people in"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := validate(t, c.caddyfile)
			if c.want == "" {
				if err != nil {
					t.Fatalf("a valid config is refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}
