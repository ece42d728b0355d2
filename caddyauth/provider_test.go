package caddyauth

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// The stock authentication handler stops at the first provider that accepts, in random order, so
// beside http_basic the oidc provider would not run on every request and a caller's own Remote-*
// headers would reach the upstream: Caddy refuses to load such a config, naming the fix, and
// loads oidc alone.
func TestProviderRefusesOtherProviders(t *testing.T) {
	const bobpw = "$2a$04$vactKjAWzpE.nLMFoN7MxuQ2DM7bZz4ObtyuB9XXAVYkLSdL1MY8O" // bcrypt of "bobpw"
	basic := `"http_basic":{"accounts":[{"username":"bob","password":"` + bobpw + `"}]}`
	load := func(providers string) error {
		js := `{"admin":{"disabled":true},"apps":{
			"oidc":{"issuer":"https://auth.example.com","storage":"` + t.TempDir() + `"},
			"http":{"servers":{"s":{"listen":[":0"],"routes":[{"handle":[
				{"handler":"authentication","providers":{` + providers + `}}
			]}]}}}}}`
		var c caddy.Config
		if err := json.Unmarshal([]byte(js), &c); err != nil {
			t.Fatal(err)
		}
		return caddy.Validate(&c)
	}
	for _, providers := range []string{basic + `,"oidc":{}`, `"oidc":{},` + basic} {
		err := load(providers)
		if err == nil || !strings.Contains(err.Error(), "providers besides oidc (http_basic)") || !strings.Contains(err.Error(), "oidc_auth") {
			t.Errorf("%s: %v; want a refusal naming http_basic and oidc_auth", providers, err)
		}
	}
	if err := load(`"oidc":{}`); err != nil {
		t.Errorf("oidc alone: %v", err)
	}
	if err := load(basic); err != nil {
		t.Errorf("http_basic alone: %v", err)
	}
}
