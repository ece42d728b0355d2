package accesscontrol

import (
	"net/netip"
	"net/url"
	"path"
	"strings"
)

// Request is what the rules see of an HTTP request. Build it once per request.
type Request struct {
	// Host is the lowercase host name without port.
	Host string
	// Path is the request path as sent (it is cleaned for resources).
	Path string
	// RawQuery is the query string without "?".
	RawQuery string
	// Method is the uppercase HTTP method.
	Method string
	// IP is the client address as the server's trusted proxies settle it.
	IP netip.Addr
	// RawIP, when IP is not set, is the client address as text, parsed only if a rule has a
	// networks criterion.
	RawIP string

	target      string
	targetReady bool
	query       url.Values
	queryReady  bool
}

// Target is the string resources match: the cleaned path (trailing slash kept) plus "?query".
func (r *Request) Target() string {
	if !r.targetReady {
		r.target = CleanTarget(r.Path, r.RawQuery)
		r.targetReady = true
	}
	return r.target
}

// CleanTarget cleans p as path.Clean does, keeps a trailing slash, and appends "?" and the
// query when there is one.
func CleanTarget(p, rawQuery string) string {
	if p == "" {
		p = "/"
	}
	c := path.Clean(p)
	if c != "/" && strings.HasSuffix(p, "/") {
		c += "/"
	}
	if rawQuery != "" {
		return c + "?" + rawQuery
	}
	return c
}

func (r *Request) clientIP() netip.Addr {
	if !r.IP.IsValid() && r.RawIP != "" {
		if ip, err := netip.ParseAddr(r.RawIP); err == nil {
			r.IP = ip.Unmap()
		}
		r.RawIP = ""
	}
	return r.IP
}

func (r *Request) queryValues() url.Values {
	if !r.queryReady {
		r.query, _ = url.ParseQuery(r.RawQuery)
		r.queryReady = true
	}
	return r.query
}

// Subject is the caller the rules are evaluated for. The zero value is anonymous.
type Subject struct {
	// Username is the user's name, or "" for none.
	Username string
	// Groups are the user's groups.
	Groups []string
	// ClientID is the OAuth 2.0 client of a client_credentials token, or "".
	ClientID string
}

// IsAnonymous reports whether the subject names no user, group or client.
func (s *Subject) IsAnonymous() bool {
	return s == nil || (s.Username == "" && len(s.Groups) == 0 && s.ClientID == "")
}

func (s *Subject) hasGroup(g string, fold bool) bool {
	for _, x := range s.Groups {
		if x == g || (fold && strings.EqualFold(x, g)) {
			return true
		}
	}
	return false
}

// Decision is the outcome of evaluating the rules.
type Decision struct {
	// Policy is the policy of the matched rule, or the default policy.
	Policy Policy
	// Rule is the zero-based index of the matched rule in the engine's list, or -1 for the
	// default policy.
	Rule int
	// HasSubjects is true when the matched rule carries subjects, so an anonymous caller "may
	// match" it and is to be sent to log in rather than denied.
	HasSubjects bool
}

// Engine evaluates an ordered, compiled list of rules. It is immutable and safe for concurrent use.
type Engine struct {
	rules         []*compiledRule
	defaultPolicy Policy
}

// NewEngine returns an engine over the given compiled lists, evaluated in order (for example a
// site's rules, then the global ones), ending in defaultPolicy.
func NewEngine(defaultPolicy Policy, sets ...*RuleSet) *Engine {
	e := &Engine{defaultPolicy: defaultPolicy}
	for _, s := range sets {
		if s != nil {
			e.rules = append(e.rules, s.rules...)
		}
	}
	if e.defaultPolicy == 0 {
		e.defaultPolicy = Deny
	}
	return e
}

// Rules is the number of rules in the engine.
func (e *Engine) Rules() int { return len(e.rules) }

// RuleName describes the i-th rule for logs.
func (e *Engine) RuleName(i int) string {
	if i < 0 || i >= len(e.rules) {
		return "default_policy"
	}
	return e.rules[i].desc
}

// Decide evaluates the rules for the request and subject: the first rule whose criteria all hold
// decides. For an anonymous subject, subject criteria "may match", so the first rule that matches
// on everything else is chosen and HasSubjects tells the caller to ask for a login.
func (e *Engine) Decide(req *Request, subj *Subject) Decision {
	anon := subj.IsAnonymous()
	if subj == nil {
		subj = &Subject{}
	}
	for i, r := range e.rules {
		if r.matches(req, subj, anon) {
			return Decision{Policy: r.policy, Rule: i, HasSubjects: r.hasSubjects}
		}
	}
	return Decision{Policy: e.defaultPolicy, Rule: -1}
}

// DecideFor is Decide(req, subj) for a caller whose anonymous decision, Decide(req, nil), is
// anon, without evaluating again what anon settled: an anonymous caller "may match" every rule
// any caller matches, so no rule before anon's can match, and a rule without subjects matches
// every caller alike. A gate that decides for the anonymous caller first (to let a bypass rule
// through before reading credentials) pays one rule for the caller it then identifies.
func (e *Engine) DecideFor(req *Request, subj *Subject, anon Decision) Decision {
	if anon.Rule < 0 || !anon.HasSubjects || subj.IsAnonymous() {
		return anon
	}
	for i := anon.Rule; i < len(e.rules); i++ {
		if r := e.rules[i]; r.matches(req, subj, false) {
			return Decision{Policy: r.policy, Rule: i, HasSubjects: r.hasSubjects}
		}
	}
	return Decision{Policy: e.defaultPolicy, Rule: -1}
}

func (r *compiledRule) matches(req *Request, s *Subject, anon bool) bool {
	if (len(r.domains) > 0 || len(r.domainRegex) > 0) && !r.matchDomain(req.Host, s, anon) {
		return false
	}
	if len(r.resources) > 0 {
		target := req.Target()
		ok := false
		for i := range r.resources {
			if r.resources[i].match(target, s, anon) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(r.query) > 0 && !r.matchQuery(req) {
		return false
	}
	if len(r.methods) > 0 && !containsString(r.methods, req.Method) {
		return false
	}
	if len(r.networks) > 0 && !r.matchNetwork(req.clientIP()) {
		return false
	}
	if len(r.subjects) > 0 && !anon && !r.matchSubjects(s) {
		return false
	}
	return true
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (r *compiledRule) matchDomain(host string, s *Subject, anon bool) bool {
	for _, d := range r.domains {
		switch d.kind {
		case domainExact:
			if host == d.name {
				return true
			}
		case domainWildcard:
			if len(host) > len(d.suffix) && strings.HasSuffix(host, d.suffix) {
				return true
			}
		case domainUser, domainGroup:
			if len(host) <= len(d.suffix) || !strings.HasSuffix(host, d.suffix) {
				continue
			}
			label := host[:len(host)-len(d.suffix)]
			if strings.Contains(label, ".") {
				continue
			}
			if anon {
				return true // may match: the caller will be asked to log in
			}
			if d.kind == domainUser && s.Username != "" && strings.EqualFold(label, s.Username) {
				return true
			}
			if d.kind == domainGroup && s.hasGroup(label, true) {
				return true
			}
		}
	}
	for i := range r.domainRegex {
		if r.domainRegex[i].match(host, s, anon) {
			return true
		}
	}
	return false
}

func (n *namedRegexp) match(subject string, s *Subject, anon bool) bool {
	if !n.bindsSubject {
		return n.re.MatchString(subject)
	}
	m := n.re.FindStringSubmatch(subject)
	if m == nil {
		return false
	}
	if anon {
		return true
	}
	if n.userIndex >= 0 && (s.Username == "" || !strings.EqualFold(m[n.userIndex], s.Username)) {
		return false
	}
	if n.groupIdx >= 0 && !s.hasGroup(m[n.groupIdx], true) {
		return false
	}
	return true
}

func (r *compiledRule) matchQuery(req *Request) bool {
	q := req.queryValues()
	for _, alt := range r.query {
		ok := true
		for _, c := range alt {
			if !c.match(q) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (c *queryMatcher) match(q url.Values) bool {
	vs, present := q[c.key]
	first := ""
	if len(vs) > 0 {
		first = vs[0]
	}
	switch c.op {
	case opPresent:
		return present
	case opAbsent:
		return !present
	case opEqual:
		return present && first == c.value
	case opNotEqual:
		return !present || first != c.value
	case opPattern:
		return present && c.re.MatchString(first)
	case opNotPattern:
		return !present || !c.re.MatchString(first)
	}
	return false
}

func (r *compiledRule) matchNetwork(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, p := range r.networks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (r *compiledRule) matchSubjects(s *Subject) bool {
	for _, alt := range r.subjects {
		ok := true
		for _, m := range alt {
			if !m.match(s) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (m *subjectMatcher) match(s *Subject) bool {
	switch m.kind {
	case SubjectUser:
		return s.Username != "" && s.Username == m.name
	case SubjectGroup:
		return s.Username != "" && s.hasGroup(m.name, false)
	case SubjectClient:
		return s.ClientID != "" && s.ClientID == m.name
	}
	return false
}

// Match is how one rule relates to a request and subject in Explain.
type Match uint8

// The outcomes of a rule in Explain.
const (
	// NoMatch: some criterion of the rule does not hold.
	NoMatch Match = iota
	// Matches: every criterion holds.
	Matches
	// MayMatch: every criterion but the subjects holds, and the caller is anonymous: the rule
	// would apply once the caller signs in as one of its subjects.
	MayMatch
)

// String is "match", "no match" or "may match".
func (m Match) String() string {
	switch m {
	case Matches:
		return "match"
	case MayMatch:
		return "may match"
	}
	return "no match"
}

// RuleResult is one rule's outcome in Explain.
type RuleResult struct {
	// Name describes the rule as RuleName does.
	Name string
	// Policy is the rule's policy.
	Policy Policy
	// Match is how the rule relates to the request.
	Match Match
}

// Explain evaluates every rule for the request and subject, not only up to the deciding one, and
// returns each rule's outcome with the decision Decide makes. It is for operators' tools; the
// gate calls Decide.
func (e *Engine) Explain(req *Request, subj *Subject) ([]RuleResult, Decision) {
	anon := subj.IsAnonymous()
	s := subj
	if s == nil {
		s = &Subject{}
	}
	out := make([]RuleResult, len(e.rules))
	for i, r := range e.rules {
		out[i] = RuleResult{Name: r.desc, Policy: r.policy}
		if r.matches(req, s, anon) {
			out[i].Match = Matches
			if anon && r.hasSubjects {
				out[i].Match = MayMatch
			}
		}
	}
	return out, e.Decide(req, subj)
}

// ExactDomains lists the host names the engine's rules name exactly (not wildcards, regular
// expressions or {user}/{group} labels), each once: a bounded set, fit for metric labels.
func (e *Engine) ExactDomains() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range e.rules {
		for _, d := range r.domains {
			if d.kind == domainExact && !seen[d.name] {
				seen[d.name] = true
				out = append(out, d.name)
			}
		}
	}
	return out
}
