package accesscontrol

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzCompileAndDecide feeds arbitrary criteria and requests through compile and match: neither
// may panic, a compiled bypass rule never carries subjects, and DecideFor from the anonymous
// decision is Decide.
func FuzzCompileAndDecide(f *testing.F) {
	f.Add("*.example.com", `^/api/(?P<User>\w+)`, "GET", "10.0.0.0/8", "user:john", "k", "pattern", "^a", "a.example.com", "/api/john", "k=aa", "10.1.1.1", "one_factor")
	f.Add("{group}.example.com", "(", "FETCH", "x", "group:", "", "like", "", "", "", "", "", "bypass")
	f.Add("", "", "", "::1", "oauth2:client:c", "q", "not equal", "1", "x", "/..", "q=1&q=2", "::ffff:1.2.3.4", "deny")
	f.Fuzz(func(t *testing.T, domain, resource, method, network, subject, qk, qop, qv, host, path, query, ip, policy string) {
		r := Rule{Policy: policy}
		if domain != "" {
			r.Domain = []string{domain}
		}
		if resource != "" {
			r.Resources = []string{resource}
			r.DomainRegex = []string{resource}
		}
		if method != "" {
			r.Methods = []string{method}
		}
		if network != "" {
			r.Networks = []string{network}
		}
		if subject != "" {
			r.Subject = [][]string{strings.Split(subject, ",")}
		}
		if qk != "" || qop != "" || qv != "" {
			r.Query = [][]QueryCondition{{{Key: qk, Operator: qop, Value: qv}}}
		}
		set, err := Compile([]Rule{r}, CompileOptions{})
		if err != nil {
			return
		}
		if set.rules[0].policy == Bypass && set.rules[0].hasSubjects {
			t.Fatal("bypass rule compiled with subjects")
		}
		// the rule alone, and the rule between two that each match some requests
		other, err := Compile([]Rule{{Resources: []string{"^/a"}, Subject: [][]string{{"group:" + qv}}, Policy: "deny"}, {Resources: []string{"^/b"}, Policy: "one_factor"}}, CompileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := netip.ParseAddr(ip)
		for _, e := range []*Engine{NewEngine(Deny, set), NewEngine(Deny, other, set, other)} {
			for _, s := range []*Subject{nil, {Username: subject, Groups: []string{qv}}, {ClientID: qk}} {
				req := Request{Host: strings.ToLower(host), Path: path, RawQuery: query, Method: strings.ToUpper(method), IP: addr}
				d := e.Decide(&req, s)
				if d.Rule < -1 || d.Rule >= e.Rules() {
					t.Fatalf("rule index %d out of range", d.Rule)
				}
				if got := e.DecideFor(&req, s, e.Decide(&req, nil)); got != d {
					t.Fatalf("DecideFor from the anonymous decision = %+v, Decide = %+v", got, d)
				}
			}
		}
	})
}
