package caddyauth

import "github.com/portcullis-auth/portcullis/accesscontrol"

// verdict is what the gate decided.
type verdict uint8

const (
	verdictAllow        verdict = iota + 1
	verdictUnauthorized         // anonymous: log in (302/303 for browsers, 401 otherwise)
	verdictInvalid              // invalid credentials: 401/407 with the challenge
	verdictForbidden            // authenticated but not enough: 403
	verdictDeny                 // anonymous on a rule without subjects: 403
	verdictStepUp               // a one-factor session on a two_factor rule: the second-factor page
)

// foreignTokenDescription explains a 401 to a caller whose Bearer token is not ours.
const foreignTokenDescription = "The Bearer token was not issued by this provider."

// decide applies the rules, following Authelia: bypass lets everyone through (even with invalid
// credentials); deny is 403 unless an anonymous caller may match the rule's subjects; the factor
// policies need a caller of that level. A caller who sent only a Bearer token that is not ours is
// anonymous, but where the rule needs a caller it gets 401 invalid_token, never the portal. anon
// is the rules' decision for an anonymous caller, which the gate took before identification (a
// bypass there admits everyone without a look at their credentials).
func (g *gate) decide(req *accesscontrol.Request, found *identification, anon accesscontrol.Decision) (verdict, accesscontrol.Decision) {
	d := anon
	if found.id != nil {
		d = g.engine.DecideFor(req, &found.id.subject, anon)
	}
	switch {
	case d.Policy == accesscontrol.Bypass:
		return verdictAllow, d
	case found.failure != nil:
		return verdictInvalid, d
	case found.id == nil:
		if d.Policy == accesscontrol.Deny && !d.HasSubjects {
			return verdictDeny, d
		}
		if found.foreign != nil {
			found.failure = &credentialFailure{strategy: found.foreign, description: foreignTokenDescription}
			return verdictInvalid, d
		}
		return verdictUnauthorized, d
	case d.Policy == accesscontrol.Deny:
		return verdictForbidden, d
	case d.Policy == accesscontrol.TwoFactor && found.id.level < accesscontrol.TwoFactor:
		if found.id.cookie != "" {
			return verdictStepUp, d
		}
		return verdictForbidden, d
	}
	return verdictAllow, d
}
