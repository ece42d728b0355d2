package portal

import (
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

// The consent page puts a request in words: every scope the provider serves has a description
// (the gateway's scope too, which portal spells out itself), an unknown one is named, and a
// remembered consent's lifetime reads as people say it.
func TestConsentWording(t *testing.T) {
	if scopeGatewayCall != clients.ScopeBearerAuthz {
		t.Fatalf("the consent page describes %q, the gateway's scope is %q", scopeGatewayCall, clients.ScopeBearerAuthz)
	}
	v := (&Consent{ClientID: "app", Scopes: []string{"openid", clients.ScopeBearerAuthz, "custom"}, Remember: 7 * 24 * time.Hour}).view()
	if len(v.Scopes) != 3 || v.Scopes[0].Claims != "an account identifier" ||
		v.Scopes[1].Description != "Call the sites this gateway protects as you" || v.Scopes[2].Description != "Use the scope “custom”" {
		t.Fatalf("scopes: %+v", v.Scopes)
	}
	if v.Remember != "1 week" {
		t.Fatalf("remember: %q", v.Remember)
	}
	for d, want := range map[time.Duration]string{
		0: "", -time.Hour: "", 14 * 24 * time.Hour: "2 weeks", 3 * 24 * time.Hour: "3 days", time.Hour: "1 hour",
		90 * time.Minute: "90 minutes", 90 * time.Second: "1m30s",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
