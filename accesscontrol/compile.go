package accesscontrol

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// validMethods are the methods a rule may name: RFC 7231, PATCH (RFC 5789) and WebDAV.
var validMethods = []string{
	"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
	"COPY", "LOCK", "MKCOL", "MOVE", "PROPFIND", "PROPPATCH", "UNLOCK",
}

// Query operators.
const (
	opPresent    = "present"
	opAbsent     = "absent"
	opEqual      = "equal"
	opNotEqual   = "not equal"
	opPattern    = "pattern"
	opNotPattern = "not pattern"
)

// NormalizeOperator maps an operator's spellings ("not equal", "not_equal", "NotEqual") to the
// canonical name; it returns "" for an unknown operator.
func NormalizeOperator(op string) string {
	o := strings.ToLower(strings.NewReplacer("_", " ", "-", " ").Replace(strings.TrimSpace(op)))
	switch o {
	case opPresent, opAbsent, opEqual, opNotEqual, opPattern, opNotPattern:
		return o
	case "notequal":
		return opNotEqual
	case "notpattern":
		return opNotPattern
	}
	return ""
}

type domainKind uint8

const (
	domainExact domainKind = iota
	domainWildcard
	domainUser
	domainGroup
)

type domainMatcher struct {
	kind   domainKind
	name   string // exact host, or the suffix including its leading dot
	suffix string
}

type namedRegexp struct {
	re                  *regexp.Regexp
	userIndex, groupIdx int // submatch indexes of the User and Group groups, or -1
	bindsSubject        bool
}

type queryMatcher struct {
	key   string
	op    string
	value string
	re    *regexp.Regexp
}

type subjectMatcher struct {
	kind SubjectKind
	name string
}

// compiledRule is a Rule ready to match.
type compiledRule struct {
	index       int
	desc        string
	domains     []domainMatcher
	domainRegex []namedRegexp
	resources   []namedRegexp
	methods     []string
	networks    []netip.Prefix
	query       [][]queryMatcher
	subjects    [][]subjectMatcher
	policy      Policy
	hasSubjects bool // subject criterion or a {user}/{group}/named-group binding
	needsQuery  bool
	needsTarget bool
}

// CompileOptions tune Compile.
type CompileOptions struct {
	// RequireDomain makes domain or domain_regex mandatory (the global list). Per-site rules
	// inherit the site's host and may omit it.
	RequireDomain bool
	// Networks are the named network definitions rules may refer to.
	Networks map[string][]netip.Prefix
	// Scope prefixes error messages, e.g. "access_control" or "oidc_auth".
	Scope string
}

// ParseNetworks compiles named network definitions.
func ParseNetworks(defs map[string][]string) (map[string][]netip.Prefix, error) {
	out := make(map[string][]netip.Prefix, len(defs))
	for name, list := range defs {
		if name == "" {
			return nil, fmt.Errorf("access_control: network definition with an empty name")
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("access_control: network %q lists no CIDR or address", name)
		}
		for _, s := range list {
			p, err := parsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("access_control: network %q: %w", name, err)
			}
			out[name] = append(out[name], p)
		}
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8): %w", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address, a CIDR or a defined network name", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func compileNamed(expr string) (namedRegexp, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return namedRegexp{}, err
	}
	n := namedRegexp{re: re, userIndex: re.SubexpIndex("User"), groupIdx: re.SubexpIndex("Group")}
	n.bindsSubject = n.userIndex >= 0 || n.groupIdx >= 0
	return n, nil
}

// RuleSet is a compiled, immutable list of rules.
type RuleSet struct {
	rules []*compiledRule
}

// Len is the number of rules in the set.
func (s *RuleSet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.rules)
}

// isIPLiteral reports an IP address, with or without IPv6 brackets.
func isIPLiteral(d string) bool {
	_, err := netip.ParseAddr(strings.Trim(d, "[]"))
	return err == nil
}

// Compile checks and compiles rules. Errors name the rule and the field.
func Compile(rules []Rule, opts CompileOptions) (*RuleSet, error) {
	out := make([]*compiledRule, 0, len(rules))
	prefix := ""
	if opts.Scope != "" {
		prefix = opts.Scope + ": "
	}
	for i, r := range rules {
		cr, err := compileRule(i, r, opts)
		if err != nil {
			return nil, fmt.Errorf("%s%s: %w", prefix, r.Describe(i), err)
		}
		out = append(out, cr)
	}
	return &RuleSet{rules: out}, nil
}

func compileRule(i int, r Rule, opts CompileOptions) (*compiledRule, error) {
	cr := &compiledRule{index: i, desc: r.Describe(i)}
	var err error
	if r.Policy == "" {
		return nil, fmt.Errorf("policy is required: use bypass, one_factor, two_factor or deny")
	}
	if cr.policy, err = ParsePolicy(r.Policy); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if opts.RequireDomain && len(r.Domain) == 0 && len(r.DomainRegex) == 0 {
		return nil, fmt.Errorf("domain or domain_regex is required in a global rule")
	}
	for _, d := range r.Domain {
		d = strings.ToLower(strings.TrimSpace(d))
		if d != "" && (strings.HasPrefix(d, "*.") || strings.HasPrefix(d, "{user}.") || strings.HasPrefix(d, "{group}.")) && (strings.HasSuffix(d, ".") || strings.Contains(d, ":")) {
			return nil, fmt.Errorf("domain: %q must be a host name without a port or a trailing dot", d)
		}
		switch {
		case d == "":
			return nil, fmt.Errorf("domain: empty entry")
		case strings.HasPrefix(d, "*."):
			cr.domains = append(cr.domains, domainMatcher{kind: domainWildcard, suffix: d[1:]})
		case strings.HasPrefix(d, "{user}."):
			cr.domains = append(cr.domains, domainMatcher{kind: domainUser, suffix: d[len("{user}"):]})
			cr.hasSubjects = true
		case strings.HasPrefix(d, "{group}."):
			cr.domains = append(cr.domains, domainMatcher{kind: domainGroup, suffix: d[len("{group}"):]})
			cr.hasSubjects = true
		case strings.ContainsAny(d, "*{}/ "):
			return nil, fmt.Errorf("domain: %q is not a host name; use *.example.com for subdomains or domain_regex", d)
		case strings.HasSuffix(d, "."):
			return nil, fmt.Errorf("domain: %q ends with a dot; write the host name without it (%s), hosts are compared without their trailing dot", d, strings.TrimSuffix(d, "."))
		case isIPLiteral(d):
			cr.domains = append(cr.domains, domainMatcher{kind: domainExact, name: strings.Trim(d, "[]")})
		case strings.Contains(d, ":"):
			return nil, fmt.Errorf("domain: %q has a port; rules match the host name alone, so drop the port (give each port its own site block if they differ)", d)
		default:
			cr.domains = append(cr.domains, domainMatcher{kind: domainExact, name: d})
		}
	}
	for _, expr := range r.DomainRegex {
		n, err := compileNamed(expr)
		if err != nil {
			return nil, fmt.Errorf("domain_regex: %q is not a valid RE2 expression: %w", expr, err)
		}
		cr.hasSubjects = cr.hasSubjects || n.bindsSubject
		cr.domainRegex = append(cr.domainRegex, n)
	}
	for _, expr := range r.Resources {
		n, err := compileNamed(expr)
		if err != nil {
			return nil, fmt.Errorf("resources: %q is not a valid RE2 expression: %w", expr, err)
		}
		cr.hasSubjects = cr.hasSubjects || n.bindsSubject
		cr.resources = append(cr.resources, n)
		cr.needsTarget = true
	}
	for _, m := range r.Methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		if !slices.Contains(validMethods, m) {
			return nil, fmt.Errorf("methods: %q is not a supported method (%s)", m, strings.Join(validMethods, ", "))
		}
		if slices.Contains(cr.methods, m) {
			return nil, fmt.Errorf("methods: %q is listed twice", m)
		}
		cr.methods = append(cr.methods, m)
	}
	for _, n := range r.Networks {
		if defined, ok := opts.Networks[n]; ok {
			cr.networks = append(cr.networks, defined...)
			continue
		}
		p, err := parsePrefix(n)
		if err != nil {
			return nil, fmt.Errorf("networks: %w; define named networks with 'network <name> <cidr...>' in access_control", err)
		}
		cr.networks = append(cr.networks, p)
	}
	for _, alt := range r.Query {
		if len(alt) == 0 {
			return nil, fmt.Errorf("query: an empty list of conditions")
		}
		var ms []queryMatcher
		for _, c := range alt {
			qm, err := compileQuery(c)
			if err != nil {
				return nil, fmt.Errorf("query: %w", err)
			}
			ms = append(ms, qm)
		}
		cr.query = append(cr.query, ms)
		cr.needsQuery = true
	}
	for _, alt := range r.Subject {
		if len(alt) == 0 {
			return nil, fmt.Errorf("subject: an empty list")
		}
		var ms []subjectMatcher
		for _, s := range alt {
			kind, name, err := ParseSubject(s)
			if err != nil {
				return nil, fmt.Errorf("subject: %w", err)
			}
			ms = append(ms, subjectMatcher{kind: kind, name: name})
		}
		cr.subjects = append(cr.subjects, ms)
		cr.hasSubjects = true
	}
	if cr.policy == Bypass && cr.hasSubjects {
		return nil, fmt.Errorf("a bypass rule may not carry subjects ({user}/{group} domains, User/Group regex groups or subject): bypass applies to everyone; use one_factor")
	}
	return cr, nil
}

func compileQuery(c QueryCondition) (queryMatcher, error) {
	if c.Key == "" {
		return queryMatcher{}, fmt.Errorf("a condition has no key")
	}
	op := c.Operator
	if op == "" {
		if c.Value != "" {
			op = opEqual
		} else {
			op = opPresent
		}
	}
	norm := NormalizeOperator(op)
	if norm == "" {
		return queryMatcher{}, fmt.Errorf("key %q: unknown operator %q (present, absent, equal, not equal, pattern, not pattern)", c.Key, op)
	}
	qm := queryMatcher{key: c.Key, op: norm, value: c.Value}
	switch norm {
	case opPresent, opAbsent:
		if c.Value != "" {
			return qm, fmt.Errorf("key %q: operator %q takes no value", c.Key, norm)
		}
	case opPattern, opNotPattern:
		re, err := regexp.Compile(c.Value)
		if err != nil {
			return qm, fmt.Errorf("key %q: %q is not a valid RE2 expression: %w", c.Key, c.Value, err)
		}
		qm.re = re
	}
	return qm, nil
}

// SubjectClients lists the client ids that "oauth2:client:" subjects of the rules name, with the
// description of the first rule naming each, so the caller can check they are registered.
func SubjectClients(rules []Rule) map[string]string {
	out := map[string]string{}
	for i, r := range rules {
		for _, alt := range r.Subject {
			for _, s := range alt {
				if kind, name, err := ParseSubject(s); err == nil && kind == SubjectClient {
					if _, ok := out[name]; !ok {
						out[name] = r.Describe(i)
					}
				}
			}
		}
	}
	return out
}
