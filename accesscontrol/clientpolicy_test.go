package accesscontrol

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClientPolicyDecide(t *testing.T) {
	nets, err := ParseNetworks(map[string][]string{"office": {"192.168.1.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := CompileClientPolicy("apps", ClientPolicyConfig{
		DefaultPolicy: "two_factor",
		Rules: []ClientPolicyRule{
			{Policy: "deny", Subject: [][]string{{"group:services"}}},
			{Policy: "one_factor", Subject: [][]string{{"group:admins", "user:john"}, {"user:jane"}}, Networks: []string{"office"}},
			{Policy: "one_factor", Networks: []string{"10.0.0.0/8", "2001:db8::1"}},
			{Subject: [][]string{{"user:bob"}}}, // policy defaults to two_factor
			{Policy: "deny", Subject: [][]string{{"user:bob"}}},
		},
	}, nets)
	if err != nil {
		t.Fatal(err)
	}
	office := netip.MustParseAddr("192.168.1.7")
	lan := netip.MustParseAddr("10.1.2.3")
	away := netip.MustParseAddr("203.0.113.5")
	cases := []struct {
		name   string
		user   string
		groups []string
		ip     netip.Addr
		want   Policy
	}{
		{"first match wins over later rules", "svc", []string{"services", "admins"}, office, Deny},
		{"all of an alternative must hold", "john", []string{"admins"}, office, OneFactor},
		{"half an alternative is no match", "john", nil, away, TwoFactor},
		{"second alternative", "jane", nil, office, OneFactor},
		{"subject without its network", "jane", nil, away, TwoFactor},
		{"network alone", "anyone", nil, lan, OneFactor},
		{"network alone, IPv4-mapped", "anyone", nil, netip.MustParseAddr("::ffff:10.0.0.1"), OneFactor},
		{"single address", "anyone", nil, netip.MustParseAddr("2001:db8::1"), OneFactor},
		{"default policy", "anyone", []string{"users"}, away, TwoFactor},
		{"rule without policy is two_factor, and first", "bob", nil, away, TwoFactor},
		{"anonymous never matches a subject", "", []string{"services"}, away, TwoFactor},
		{"anonymous still matches networks", "", nil, lan, OneFactor},
		{"no IP matches no network", "jane", nil, netip.Addr{}, TwoFactor},
		{"groups are case-sensitive", "x", []string{"Services"}, away, TwoFactor},
	}
	for _, c := range cases {
		if got := p.Decide(c.user, c.groups, c.ip); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
	if p.Name() != "apps" {
		t.Errorf("name %q", p.Name())
	}

	deny, err := CompileClientPolicy("closed", ClientPolicyConfig{DefaultPolicy: "deny", Rules: []ClientPolicyRule{{Policy: "one_factor", Subject: [][]string{{"group:family"}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := deny.Decide("ann", []string{"family"}, away); got != OneFactor {
		t.Errorf("family: %s", got)
	}
	if got := deny.Decide("eve", nil, away); got != Deny {
		t.Errorf("default deny: %s", got)
	}
	if got := deny.Decide("", nil, away); got != Deny {
		t.Errorf("anonymous under default deny: %s", got)
	}

	for _, p := range []Policy{OneFactor, TwoFactor} {
		f := FixedClientPolicy(p)
		if f.Decide("john", nil, away) != p || f.Decide("", nil, netip.Addr{}) != p || f.Name() != p.String() {
			t.Errorf("fixed %s", p)
		}
	}
}

func TestCompileClientPolicyErrors(t *testing.T) {
	nets, _ := ParseNetworks(map[string][]string{"office": {"192.168.1.0/24"}})
	rule := func(r ClientPolicyRule) ClientPolicyConfig { return ClientPolicyConfig{Rules: []ClientPolicyRule{r}} }
	cases := []struct {
		name, policy string
		cfg          ClientPolicyConfig
		want         string
	}{
		{"reserved name", "two_factor", rule(ClientPolicyRule{Subject: [][]string{{"user:a"}}}), "two_factor is a built-in policy name"},
		{"reserved deny", "deny", rule(ClientPolicyRule{Subject: [][]string{{"user:a"}}}), "deny is a built-in policy name"},
		{"empty name", "", rule(ClientPolicyRule{Subject: [][]string{{"user:a"}}}), "a policy needs a name"},
		{"bad default", "p", ClientPolicyConfig{DefaultPolicy: "bypass", Rules: []ClientPolicyRule{{Subject: [][]string{{"user:a"}}}}}, `authorization_policy p: default_policy: "bypass" must be one_factor, two_factor or deny`},
		{"no rules", "p", ClientPolicyConfig{DefaultPolicy: "one_factor"}, "authorization_policy p: no rules"},
		{"rule without criteria", "p", rule(ClientPolicyRule{Policy: "deny"}), "authorization_policy p: rule #1: a rule needs a subject or networks"},
		{"bypass rule", "p", rule(ClientPolicyRule{Policy: "bypass", Networks: []string{"office"}}), `rule #1: policy: "bypass" must be one_factor`},
		{"client subject", "p", rule(ClientPolicyRule{Subject: [][]string{{"oauth2:client:x"}}}), `"oauth2:client:x": an authorization policy decides about people`},
		{"bad subject", "p", rule(ClientPolicyRule{Subject: [][]string{{"admins"}}}), "must start with one of user:, group:"},
		{"unknown network", "p", rule(ClientPolicyRule{Networks: []string{"home"}}), `authorization_policy p: rule #1: networks: "home" is not an IP address, a CIDR or a defined network name`},
		{"empty alternative", "p", rule(ClientPolicyRule{Subject: [][]string{{}}}), "subject: an empty list"},
	}
	for _, c := range cases {
		_, err := CompileClientPolicy(c.policy, c.cfg, nets)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}
