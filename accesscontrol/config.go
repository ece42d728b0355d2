// Package accesscontrol is Portcullis's rule engine: Authelia's access_control semantics as pure
// Go. Given a request (host, path, method, client IP, query) and a subject (user, groups or OAuth
// 2.0 client), it returns the policy of the first matching rule or the default policy. It imports
// nothing from Caddy or the store: rules are compiled once (regexes compiled, names lowercased)
// and a decision does not allocate in the common case.
package accesscontrol

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Policy is what a rule requires of a request.
type Policy uint8

// The policies, from most to least permissive.
const (
	// Bypass lets every request through, authenticated or not.
	Bypass Policy = iota + 1
	// OneFactor requires an authenticated caller (password, Basic credentials or an access token).
	OneFactor
	// TwoFactor requires an authenticated user who also passed a second factor.
	TwoFactor
	// Deny refuses every request.
	Deny
)

var policyNames = map[string]Policy{"bypass": Bypass, "one_factor": OneFactor, "two_factor": TwoFactor, "deny": Deny}

// ParsePolicy parses one of bypass, one_factor, two_factor or deny.
func ParsePolicy(s string) (Policy, error) {
	if p, ok := policyNames[s]; ok {
		return p, nil
	}
	return 0, fmt.Errorf("unknown policy %q: use bypass, one_factor, two_factor or deny", s)
}

// String returns the policy's configuration name.
func (p Policy) String() string {
	for n, v := range policyNames {
		if v == p {
			return n
		}
	}
	return "invalid"
}

// MarshalJSON writes the policy's name.
func (p Policy) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

// Config is the global access_control block.
type Config struct {
	// DefaultPolicy applies when no rule matches. JSON: "default_policy". Default: "deny".
	DefaultPolicy string `json:"default_policy,omitempty"`
	// Networks names lists of CIDRs or addresses that rules can use in their networks criterion.
	// JSON: "networks". Default: none.
	Networks map[string][]string `json:"networks,omitempty"`
	// Rules are evaluated in order; the first that matches decides. JSON: "rules".
	Rules []Rule `json:"rules,omitempty"`
}

// Rule is one access-control rule. Within a rule every criterion given must hold; within a
// criterion's list, any entry may match.
type Rule struct {
	// Domain lists host names: exact (case-insensitive), "*.example.com" (any deeper name, not
	// example.com itself), or with a "{user}" or "{group}" first label bound to the caller.
	// JSON: "domain".
	Domain []string `json:"domain,omitempty"`
	// DomainRegex lists RE2 expressions matched against the host; named groups "User" and "Group"
	// bind to the caller's username and groups. JSON: "domain_regex".
	DomainRegex []string `json:"domain_regex,omitempty"`
	// Resources lists RE2 expressions matched against the cleaned path plus "?query".
	// JSON: "resources".
	Resources []string `json:"resources,omitempty"`
	// Methods lists HTTP methods (RFC 7231, PATCH, WebDAV). JSON: "methods".
	Methods []string `json:"methods,omitempty"`
	// Networks lists CIDRs, single addresses or names from Config.Networks, matched against the
	// client IP. JSON: "networks".
	Networks []string `json:"networks,omitempty"`
	// Query is a list of alternatives, each a list of conditions that must all hold.
	// JSON: "query".
	Query [][]QueryCondition `json:"query,omitempty"`
	// Subject is a list of alternatives, each a list of "user:<name>", "group:<name>" or
	// "oauth2:client:<id>" that must all hold. JSON: "subject".
	Subject [][]string `json:"subject,omitempty"`
	// Policy is bypass, one_factor, two_factor or deny. JSON: "policy". Required.
	Policy string `json:"policy"`
}

// QueryCondition tests one query parameter (its first value).
type QueryCondition struct {
	// Key is the parameter name. JSON: "key". Required.
	Key string `json:"key"`
	// Operator is present, absent, equal, "not equal", pattern or "not pattern". JSON: "operator";
	// default "equal" when a value is given, else "present".
	Operator string `json:"operator,omitempty"`
	// Value is the compared value or RE2 pattern. JSON: "value".
	Value string `json:"value,omitempty"`
}

// Describe names a rule in error messages: its position and its first domain.
func (r Rule) Describe(index int) string {
	switch {
	case len(r.Domain) > 0:
		return fmt.Sprintf("rule #%d (domain %s)", index+1, r.Domain[0])
	case len(r.DomainRegex) > 0:
		return fmt.Sprintf("rule #%d (domain_regex %s)", index+1, r.DomainRegex[0])
	}
	return fmt.Sprintf("rule #%d", index+1)
}

// SubjectKind is the prefix of a subject entry.
type SubjectKind uint8

// The subject kinds.
const (
	SubjectUser SubjectKind = iota + 1
	SubjectGroup
	SubjectClient
)

// ParseSubject splits "user:x", "group:x" or "oauth2:client:x" into kind and name.
func ParseSubject(s string) (SubjectKind, string, error) {
	s = strings.TrimSpace(s)
	for _, p := range []struct {
		prefix string
		kind   SubjectKind
	}{{"user:", SubjectUser}, {"group:", SubjectGroup}, {"oauth2:client:", SubjectClient}} {
		if name, ok := strings.CutPrefix(s, p.prefix); ok {
			name = strings.TrimSpace(name)
			if name == "" {
				return 0, "", fmt.Errorf("subject %q names no one after %q", s, p.prefix)
			}
			return p.kind, name, nil
		}
	}
	return 0, "", fmt.Errorf("subject %q must start with one of user:, group: or oauth2:client: (e.g. group:admins)", s)
}
