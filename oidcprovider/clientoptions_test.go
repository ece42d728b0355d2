package oidcprovider

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/portcullis-auth/portcullis/accesscontrol"
)

// The provider's client options as the authorization code flow reads them after Provision.
func TestClientOptionAccessors(t *testing.T) {
	a := &App{
		Issuer:  "https://auth.example.com",
		Storage: StorageConfig{Dir: t.TempDir()},
		AuthorizationPolicies: map[string]accesscontrol.ClientPolicyConfig{
			"staff": {DefaultPolicy: "deny", Rules: []accesscontrol.ClientPolicyRule{
				{Policy: "one_factor", Subject: [][]string{{"group:staff"}}, Networks: []string{"office"}},
				{Policy: "two_factor", Subject: [][]string{{"group:staff"}}},
			}},
		},
		ClaimsPolicies: map[string]ClaimsPolicy{"legacy": {IDToken: []string{"email", "groups"}}, "minimal": {}},
		Clients: []ClientConfig{
			{ID: "grafana", Secret: "$plaintext$s", RedirectURIs: []string{"https://grafana.example.com/cb"}, AuthorizationPolicy: "staff", ClaimsPolicy: "legacy"},
		},
		AccessControl: &accesscontrol.Config{Networks: map[string][]string{"office": {"192.168.1.0/24"}}},
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	c, ok := a.client("grafana")
	if !ok {
		t.Fatal("grafana is not registered")
	}
	p, ok := a.clientPolicy(c.AuthorizationPolicy())
	if !ok || p.Name() != "staff" {
		t.Fatalf("clientPolicy(%q): %v %v", c.AuthorizationPolicy(), p, ok)
	}
	office, home := netip.MustParseAddr("192.168.1.9"), netip.MustParseAddr("198.51.100.1")
	for _, tc := range []struct {
		user   string
		groups []string
		ip     netip.Addr
		want   accesscontrol.Policy
	}{
		{"ann", []string{"staff"}, office, accesscontrol.OneFactor},
		{"ann", []string{"staff"}, home, accesscontrol.TwoFactor},
		{"bob", nil, office, accesscontrol.Deny},
		{"", []string{"staff"}, home, accesscontrol.Deny},
	} {
		if got := p.Decide(tc.user, tc.groups, tc.ip); got != tc.want {
			t.Errorf("%s %v at %s: %s, want %s", tc.user, tc.groups, tc.ip, got, tc.want)
		}
	}
	for name, want := range map[string]accesscontrol.Policy{"one_factor": accesscontrol.OneFactor, "two_factor": accesscontrol.TwoFactor} {
		if p, ok := a.clientPolicy(name); !ok || p.Decide("ann", nil, home) != want {
			t.Errorf("built-in %s", name)
		}
	}
	if _, ok := a.clientPolicy("deny"); ok {
		t.Error("deny is not a client policy")
	}
	cp := a.idTokenClaimsPolicies()
	if !slices.Equal(cp["legacy"], []string{"email", "groups"}) || cp["minimal"] == nil || len(cp["minimal"]) != 0 || len(cp) != 2 {
		t.Errorf("claims policies %#v", cp)
	}
	if a.MinimumParameterEntropy != 8 {
		t.Errorf("minimum_parameter_entropy default %d", a.MinimumParameterEntropy)
	}
}
