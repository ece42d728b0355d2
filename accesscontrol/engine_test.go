package accesscontrol

import (
	"net/netip"
	"strings"
	"testing"
)

func mustEngine(t testing.TB, def Policy, rules []Rule, nets map[string][]string) *Engine {
	t.Helper()
	n, err := ParseNetworks(nets)
	if err != nil {
		t.Fatal(err)
	}
	set, err := Compile(rules, CompileOptions{Networks: n})
	if err != nil {
		t.Fatal(err)
	}
	return NewEngine(def, set)
}

func req(host, path, query, method, ip string) *Request {
	r := &Request{Host: host, Path: path, RawQuery: query, Method: method}
	if ip != "" {
		r.IP = netip.MustParseAddr(ip)
	}
	return r
}

var (
	anon   = &Subject{}
	john   = &Subject{Username: "john", Groups: []string{"admins", "dev"}}
	harry  = &Subject{Username: "harry", Groups: []string{"users"}}
	kuma   = &Subject{ClientID: "uptime-kuma-monitor"}
	other  = &Subject{ClientID: "other"}
	ipHome = "192.168.1.20"
)

func TestDecide(t *testing.T) {
	rules := []Rule{
		{Domain: []string{"public.example.com"}, Policy: "bypass"},                                                                    // 0
		{Domain: []string{"*.wild.example.com"}, Policy: "one_factor"},                                                                // 1
		{Domain: []string{"{user}.home.example.com"}, Policy: "one_factor"},                                                           // 2
		{Domain: []string{"{group}.team.example.com"}, Policy: "two_factor"},                                                          // 3
		{DomainRegex: []string{`^(?P<User>\w+)\.re\.example\.com$`}, Policy: "one_factor"},                                            // 4
		{Domain: []string{"api.example.com"}, Resources: []string{`^/health$`}, Policy: "bypass"},                                     // 5
		{Domain: []string{"api.example.com"}, Methods: []string{"get", "HEAD"}, Resources: []string{`^/read/`}, Policy: "one_factor"}, // 6
		{Domain: []string{"api.example.com"}, Networks: []string{"home"}, Policy: "one_factor"},                                       // 7
		{Domain: []string{"api.example.com"}, Query: [][]QueryCondition{{{Key: "debug", Operator: "present"}, {Key: "mode", Value: "x"}}, {{Key: "token", Operator: "absent"}, {Key: "k", Operator: "pattern", Value: "^a+$"}}}, Policy: "two_factor"}, // 8
		{Domain: []string{"secure.example.com"}, Subject: [][]string{{"oauth2:client:uptime-kuma-monitor"}}, Policy: "one_factor"},                                                                                                                     // 9
		{Domain: []string{"secure.example.com"}, Subject: [][]string{{"group:admins", "user:john"}, {"user:harry"}}, Policy: "two_factor"},                                                                                                             // 10
		{Domain: []string{"secure.example.com"}, Policy: "deny"}, // 11
		{Domain: []string{"q.example.com"}, Query: [][]QueryCondition{{{Key: "a", Operator: "not equal", Value: "1"}, {Key: "b", Operator: "not pattern", Value: "^z"}}}, Policy: "bypass"}, // 12
		{Domain: []string{"sub.example.com"}, Subject: [][]string{{"group:admins"}}, Policy: "deny"},                                                                                        // 13
	}
	e := mustEngine(t, Deny, rules, map[string][]string{"home": {"192.168.0.0/16", "10.1.2.3"}})
	cases := []struct {
		name     string
		req      *Request
		subj     *Subject
		policy   Policy
		rule     int
		subjects bool
	}{
		{"exact domain bypass", req("public.example.com", "/", "", "GET", ""), anon, Bypass, 0, false},
		{"exact domain is case-insensitive (host lowercased by caller)", req("public.example.com", "/x", "", "POST", ""), john, Bypass, 0, false},
		{"wildcard matches deeper names", req("a.b.wild.example.com", "/", "", "GET", ""), anon, OneFactor, 1, false},
		{"wildcard does not match the apex", req("wild.example.com", "/", "", "GET", ""), anon, Deny, -1, false},
		{"{user} binds the user", req("john.home.example.com", "/", "", "GET", ""), john, OneFactor, 2, true},
		{"{user} refuses another user", req("john.home.example.com", "/", "", "GET", ""), harry, Deny, -1, false},
		{"{user} may match anonymous", req("john.home.example.com", "/", "", "GET", ""), anon, OneFactor, 2, true},
		{"{user} needs exactly one label", req("a.john.home.example.com", "/", "", "GET", ""), anon, Deny, -1, false},
		{"{group} binds a group", req("dev.team.example.com", "/", "", "GET", ""), john, TwoFactor, 3, true},
		{"{group} refuses non-members", req("dev.team.example.com", "/", "", "GET", ""), harry, Deny, -1, false},
		{"domain_regex User group", req("harry.re.example.com", "/", "", "GET", ""), harry, OneFactor, 4, true},
		{"domain_regex User group mismatch", req("harry.re.example.com", "/", "", "GET", ""), john, Deny, -1, false},
		{"domain_regex may match anonymous", req("harry.re.example.com", "/", "", "GET", ""), anon, OneFactor, 4, true},
		{"resources exact", req("api.example.com", "/health", "", "GET", ""), anon, Bypass, 5, false},
		{"resources see the query", req("api.example.com", "/health", "x=1", "GET", ""), anon, Deny, -1, false},
		{"resources on cleaned path", req("api.example.com", "/a/../health", "", "GET", ""), anon, Bypass, 5, false},
		{"methods match", req("api.example.com", "/read/x", "", "HEAD", ""), kuma, OneFactor, 6, false},
		{"methods do not match", req("api.example.com", "/read/x", "", "POST", ""), kuma, Deny, -1, false},
		{"networks CIDR from a definition", req("api.example.com", "/x", "", "POST", ipHome), kuma, OneFactor, 7, false},
		{"networks single IP from a definition", req("api.example.com", "/x", "", "POST", "10.1.2.3"), kuma, OneFactor, 7, false},
		{"networks IPv4-mapped IPv6", req("api.example.com", "/x", "", "POST", "::ffff:192.168.3.4"), kuma, OneFactor, 7, false},
		{"networks miss", req("api.example.com", "/x", "", "POST", "10.1.2.4"), kuma, Deny, -1, false},
		{"query first alternative", req("api.example.com", "/x", "debug&mode=x", "POST", "8.8.8.8"), kuma, TwoFactor, 8, false},
		{"query first alternative partial", req("api.example.com", "/x", "debug&mode=y", "POST", "8.8.8.8"), kuma, Deny, -1, false},
		{"query second alternative", req("api.example.com", "/x", "k=aaa", "POST", "8.8.8.8"), kuma, TwoFactor, 8, false},
		{"query second alternative pattern miss", req("api.example.com", "/x", "k=aab", "POST", "8.8.8.8"), kuma, Deny, -1, false},
		{"query uses the first value", req("api.example.com", "/x", "k=b&k=aaa", "POST", "8.8.8.8"), kuma, Deny, -1, false},
		{"client subject", req("secure.example.com", "/", "", "GET", ""), kuma, OneFactor, 9, true},
		{"other client falls through to deny", req("secure.example.com", "/", "", "GET", ""), other, Deny, 11, false},
		{"anonymous may match the first subject rule", req("secure.example.com", "/", "", "GET", ""), anon, OneFactor, 9, true},
		{"AND within an alternative", req("secure.example.com", "/", "", "GET", ""), john, TwoFactor, 10, true},
		{"OR across alternatives", req("secure.example.com", "/", "", "GET", ""), harry, TwoFactor, 10, true},
		{"AND fails when one is missing", req("secure.example.com", "/", "", "GET", ""), &Subject{Username: "bob", Groups: []string{"admins"}}, Deny, 11, false},
		{"not equal / not pattern hold when absent", req("q.example.com", "/", "", "GET", ""), anon, Bypass, 12, false},
		{"not equal fails on equal", req("q.example.com", "/", "a=1", "GET", ""), anon, Deny, -1, false},
		{"not pattern fails on match", req("q.example.com", "/", "b=zz", "GET", ""), anon, Deny, -1, false},
		{"deny with subjects may match anonymous", req("sub.example.com", "/", "", "GET", ""), anon, Deny, 13, true},
		{"deny with subjects for a member", req("sub.example.com", "/", "", "GET", ""), john, Deny, 13, true},
		{"deny with subjects skipped for a non-member", req("sub.example.com", "/", "", "GET", ""), harry, Deny, -1, false},
		{"client is not a user subject", req("secure.example.com", "/", "", "GET", ""), &Subject{ClientID: "john"}, Deny, 11, false},
		{"nil subject is anonymous", req("secure.example.com", "/", "", "GET", ""), nil, OneFactor, 9, true},
		{"default policy", req("nowhere.example.com", "/", "", "GET", ""), john, Deny, -1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := e.Decide(c.req, c.subj)
			if d.Policy != c.policy || d.Rule != c.rule || d.HasSubjects != c.subjects {
				t.Fatalf("got policy %s rule %d subjects %v; want %s rule %d subjects %v", d.Policy, d.Rule, d.HasSubjects, c.policy, c.rule, c.subjects)
			}
		})
	}
}

func TestFirstMatchWinsAndSiteRulesFirst(t *testing.T) {
	global, err := Compile([]Rule{{Domain: []string{"a.example.com"}, Policy: "deny"}}, CompileOptions{RequireDomain: true})
	if err != nil {
		t.Fatal(err)
	}
	site, err := Compile([]Rule{{Resources: []string{"^/open"}, Policy: "bypass"}, {Resources: []string{"^/open"}, Policy: "deny"}}, CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(OneFactor, site, global)
	if d := e.Decide(req("a.example.com", "/open/x", "", "GET", ""), nil); d.Policy != Bypass || d.Rule != 0 {
		t.Fatalf("site rule should win: %+v", d)
	}
	if d := e.Decide(req("a.example.com", "/closed", "", "GET", ""), nil); d.Policy != Deny || d.Rule != 2 {
		t.Fatalf("global rule should follow: %+v", d)
	}
	if d := e.Decide(req("b.example.com", "/closed", "", "GET", ""), nil); d.Policy != OneFactor || d.Rule != -1 {
		t.Fatalf("default policy last: %+v", d)
	}
	if NewEngine(0).Decide(req("x", "/", "", "GET", ""), nil).Policy != Deny {
		t.Fatal("zero default policy must be deny")
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		rule Rule
		want string
	}{
		{Rule{Domain: []string{"a"}}, "policy is required"},
		{Rule{Domain: []string{"a"}, Policy: "allow"}, `unknown policy "allow"`},
		{Rule{Policy: "deny"}, "domain or domain_regex is required"},
		{Rule{Domain: []string{"a"}, Subject: [][]string{{"user:x"}}, Policy: "bypass"}, "bypass rule may not carry subjects"},
		{Rule{Domain: []string{"{user}.a"}, Policy: "bypass"}, "bypass rule may not carry subjects"},
		{Rule{DomainRegex: []string{"(?P<Group>.*)"}, Policy: "bypass"}, "bypass rule may not carry subjects"},
		{Rule{DomainRegex: []string{"("}, Policy: "deny"}, "domain_regex"},
		{Rule{Domain: []string{"a"}, Resources: []string{"[z-a]"}, Policy: "deny"}, "resources"},
		{Rule{Domain: []string{"a"}, Methods: []string{"FETCH"}, Policy: "deny"}, `methods: "FETCH"`},
		{Rule{Domain: []string{"a"}, Methods: []string{"GET", "get"}, Policy: "deny"}, "listed twice"},
		{Rule{Domain: []string{"a"}, Networks: []string{"office"}, Policy: "deny"}, `networks: "office" is not an IP address, a CIDR or a defined network name`},
		{Rule{Domain: []string{"a"}, Networks: []string{"10.0.0.0/33"}, Policy: "deny"}, "not a CIDR"},
		{Rule{Domain: []string{"a"}, Subject: [][]string{{"admin"}}, Policy: "deny"}, "must start with one of user:"},
		{Rule{Domain: []string{"a"}, Subject: [][]string{{"group:"}}, Policy: "deny"}, "names no one"},
		{Rule{Domain: []string{"a"}, Subject: [][]string{{}}, Policy: "deny"}, "empty list"},
		{Rule{Domain: []string{"a"}, Query: [][]QueryCondition{{{Key: "k", Operator: "like", Value: "v"}}}, Policy: "deny"}, "unknown operator"},
		{Rule{Domain: []string{"a"}, Query: [][]QueryCondition{{{Key: "k", Operator: "absent", Value: "v"}}}, Policy: "deny"}, "takes no value"},
		{Rule{Domain: []string{"a"}, Query: [][]QueryCondition{{{Key: "k", Operator: "pattern", Value: "("}}}, Policy: "deny"}, "not a valid RE2"},
		{Rule{Domain: []string{"a"}, Query: [][]QueryCondition{{{Operator: "present"}}}, Policy: "deny"}, "no key"},
		{Rule{Domain: []string{"a b"}, Policy: "deny"}, "is not a host name"},
	}
	for _, c := range cases {
		_, err := Compile([]Rule{{Domain: []string{"ok.example.com"}, Policy: "deny"}, c.rule}, CompileOptions{RequireDomain: true})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "rule #2") {
			t.Errorf("%+v: got %v, want an error naming rule #2 and containing %q", c.rule, err, c.want)
		}
	}
	if _, err := ParseNetworks(map[string][]string{"x": {"nope"}}); err == nil || !strings.Contains(err.Error(), `network "x"`) {
		t.Errorf("bad network definition: %v", err)
	}
}

func TestCleanTarget(t *testing.T) {
	for in, want := range map[[2]string]string{
		{"", ""}:          "/",
		{"/a/b/../c", ""}: "/a/c",
		{"/a//b/", "x=1"}: "/a/b/?x=1",
		{"/a/./", ""}:     "/a/",
		{"/../etc", "q"}:  "/etc?q",
	} {
		if got := CleanTarget(in[0], in[1]); got != want {
			t.Errorf("CleanTarget(%q, %q) = %q, want %q", in[0], in[1], got, want)
		}
	}
}

func TestParseSubjectAndOperators(t *testing.T) {
	k, n, err := ParseSubject(" oauth2:client: kuma ")
	if err != nil || k != SubjectClient || n != "kuma" {
		t.Fatalf("got %v %q %v", k, n, err)
	}
	for in, want := range map[string]string{"not equal": "not equal", "not_equal": "not equal", "NotPattern": "not pattern", "Present": "present", "like": ""} {
		if got := NormalizeOperator(in); got != want {
			t.Errorf("NormalizeOperator(%q) = %q, want %q", in, got, want)
		}
	}
	if p, err := ParsePolicy("two_factor"); err != nil || p.String() != "two_factor" {
		t.Fatalf("policy round trip: %v %v", p, err)
	}
}

func BenchmarkDecide(b *testing.B) {
	rules := []Rule{
		{Domain: []string{"public.example.com"}, Policy: "bypass"},
		{Domain: []string{"*.internal.example.com"}, Networks: []string{"10.0.0.0/8"}, Policy: "one_factor"},
		{Domain: []string{"api.example.com"}, Resources: []string{`^/health$`}, Policy: "bypass"},
		{Domain: []string{"secure.example.com"}, Subject: [][]string{{"oauth2:client:uptime-kuma-monitor"}}, Policy: "one_factor"},
	}
	e := mustEngine(b, Deny, rules, nil)
	subj := &Subject{ClientID: "uptime-kuma-monitor"}
	b.ReportAllocs()
	for b.Loop() {
		r := Request{Host: "secure.example.com", Path: "/status", Method: "GET", IP: netip.MustParseAddr("127.0.0.1")}
		if d := e.Decide(&r, subj); d.Policy != OneFactor {
			b.Fatal(d)
		}
	}
}

func TestRawIPParsedForNetworks(t *testing.T) {
	e := mustEngine(t, Deny, []Rule{{Domain: []string{"a"}, Networks: []string{"10.0.0.0/8"}, Policy: "bypass"}}, nil)
	for raw, want := range map[string]Policy{"10.2.3.4": Bypass, "::ffff:10.2.3.4": Bypass, "192.0.2.1": Deny, "not-an-ip": Deny, "": Deny} {
		r := &Request{Host: "a", Path: "/", Method: "GET", RawIP: raw}
		if d := e.Decide(r, nil); d.Policy != want {
			t.Errorf("RawIP %q: %s, want %s", raw, d.Policy, want)
		}
	}
}
