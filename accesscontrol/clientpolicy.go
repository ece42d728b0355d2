package accesscontrol

import (
	"fmt"
	"net/netip"
)

// ClientPolicyConfig is one of the oidc app's authorization_policies: who may sign in to the
// clients that name it, decided at the authorization endpoint (Authelia's
// identity_providers.oidc.authorization_policies.<name>).
type ClientPolicyConfig struct {
	// DefaultPolicy applies when no rule matches: one_factor, two_factor or deny.
	// JSON: "default_policy". Default: "two_factor".
	DefaultPolicy string `json:"default_policy,omitempty"`
	// Rules are evaluated in order; the first that matches decides. JSON: "rules".
	Rules []ClientPolicyRule `json:"rules,omitempty"`
}

// ClientPolicyRule is one rule of an authorization policy. It needs a subject or networks (or
// both, which must then both hold).
type ClientPolicyRule struct {
	// Policy is one_factor, two_factor or deny. JSON: "policy". Default: "two_factor".
	Policy string `json:"policy,omitempty"`
	// Subject is a list of alternatives, each a list of "user:<name>" or "group:<name>" that
	// must all hold. An anonymous caller never matches a subject. JSON: "subject".
	Subject [][]string `json:"subject,omitempty"`
	// Networks lists CIDRs, single addresses or names from access_control's network
	// definitions, matched against the client IP. JSON: "networks".
	Networks []string `json:"networks,omitempty"`
}

// ClientPolicy is a compiled authorization policy. It is immutable and safe for concurrent use.
type ClientPolicy struct {
	name          string
	rules         []*compiledRule
	defaultPolicy Policy
}

// FixedClientPolicy is a policy without rules: the built-in one_factor and two_factor.
func FixedClientPolicy(p Policy) *ClientPolicy {
	return &ClientPolicy{name: p.String(), defaultPolicy: p}
}

// CompileClientPolicy checks and compiles the authorization policy name, with networks the named
// network definitions its rules may use. Errors name the policy, the rule and the fix.
func CompileClientPolicy(name string, cfg ClientPolicyConfig, networks map[string][]netip.Prefix) (*ClientPolicy, error) {
	prefix := fmt.Sprintf("authorization_policy %s", name)
	switch name {
	case "":
		return nil, fmt.Errorf("authorization_policy: a policy needs a name: authorization_policy <name> { … }")
	case "one_factor", "two_factor", "deny":
		return nil, fmt.Errorf("%s: %s is a built-in policy name; pick another name", prefix, name)
	}
	p := &ClientPolicy{name: name, defaultPolicy: TwoFactor}
	if cfg.DefaultPolicy != "" {
		pol, err := clientPolicyLevel(cfg.DefaultPolicy)
		if err != nil {
			return nil, fmt.Errorf("%s: default_policy: %w", prefix, err)
		}
		p.defaultPolicy = pol
	}
	if len(cfg.Rules) == 0 {
		return nil, fmt.Errorf("%s: no rules; add 'rule { subject group:<name>  policy one_factor }', or name %s directly as the client's authorization_policy", prefix, p.defaultPolicy)
	}
	for i, r := range cfg.Rules {
		where := fmt.Sprintf("%s: rule #%d", prefix, i+1)
		if len(r.Subject) == 0 && len(r.Networks) == 0 {
			return nil, fmt.Errorf("%s: a rule needs a subject or networks (or both)", where)
		}
		pol := r.Policy
		if pol == "" {
			pol = "two_factor"
		}
		level, err := clientPolicyLevel(pol)
		if err != nil {
			return nil, fmt.Errorf("%s: policy: %w", where, err)
		}
		for _, alt := range r.Subject {
			for _, s := range alt {
				if kind, _, err := ParseSubject(s); err == nil && kind == SubjectClient {
					return nil, fmt.Errorf("%s: subject: %q: an authorization policy decides about people signing in; use user:<name> or group:<name>", where, s)
				}
			}
		}
		cr, err := compileRule(i, Rule{Subject: r.Subject, Networks: r.Networks, Policy: level.String()}, CompileOptions{Networks: networks})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		cr.desc = where
		p.rules = append(p.rules, cr)
	}
	return p, nil
}

func clientPolicyLevel(s string) (Policy, error) {
	switch s {
	case "one_factor":
		return OneFactor, nil
	case "two_factor":
		return TwoFactor, nil
	case "deny":
		return Deny, nil
	}
	return 0, fmt.Errorf("%q must be one_factor, two_factor or deny", s)
}

// Name is the policy's name: its configured name, or one_factor / two_factor for the built-ins.
func (p *ClientPolicy) Name() string { return p.name }

// Decide returns the policy of the first rule that matches the user, their groups and the client
// IP, or the default policy: OneFactor, TwoFactor or Deny. Unlike access_control, a subject never
// matches an anonymous caller (user ""): such a caller matches only rules without subjects.
func (p *ClientPolicy) Decide(user string, groups []string, ip netip.Addr) Policy {
	s := Subject{Username: user, Groups: groups}
	for _, r := range p.rules {
		if len(r.networks) > 0 && !r.matchNetwork(ip) {
			continue
		}
		if len(r.subjects) > 0 && (user == "" || !r.matchSubjects(&s)) {
			continue
		}
		return r.policy
	}
	return p.defaultPolicy
}
