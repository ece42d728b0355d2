package claims

import (
	"reflect"
	"slices"
	"testing"

	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

func fullUser() *users.User {
	return &users.User{
		Name:        "john",
		DisplayName: "John Doe",
		Emails:      []string{"john@example.com", "jd@example.org", "doe@example.net"},
		Groups:      []string{"admins", "dev"},
		Profile: users.Profile{
			GivenName: "John", MiddleName: "Q", FamilyName: "Doe", Nickname: "Johnny",
			Profile: "https://example.com/john", Picture: "https://example.com/john.jpg",
			Website: "https://john.example.com", Gender: "male", Birthdate: "1970-01-01",
			ZoneInfo: "Europe/Paris", Locale: "fr-FR",
			PhoneNumber: "+1-201-555-0123", PhoneExtension: "1234",
			Address: &users.Address{
				StreetAddress: "1 Main St", Locality: "Springfield", Region: "IL",
				PostalCode: "62701", Country: "US",
			},
			Extra: map[string]any{"employee_id": 7},
		},
	}
}

func TestForScopesFullUser(t *testing.T) {
	got := ForScopes(fullUser(), []string{"openid", "profile", "email", "phone", "address", "groups", "offline_access"})
	want := map[string]any{
		"name": "John Doe", "preferred_username": "john",
		"given_name": "John", "middle_name": "Q", "family_name": "Doe", "nickname": "Johnny",
		"profile": "https://example.com/john", "picture": "https://example.com/john.jpg",
		"website": "https://john.example.com", "gender": "male", "birthdate": "1970-01-01",
		"zoneinfo": "Europe/Paris", "locale": "fr-FR",
		"email": "john@example.com", "email_verified": true,
		"alt_emails":   []string{"jd@example.org", "doe@example.net"},
		"phone_number": "+1-201-555-0123;ext=1234", "phone_number_verified": false,
		"address": map[string]any{
			"street_address": "1 Main St", "locality": "Springfield", "region": "IL",
			"postal_code": "62701", "country": "US",
			"formatted": "1 Main St\nSpringfield IL 62701\nUS",
		},
		"groups": []string{"admins", "dev"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("claims:\n got %#v\nwant %#v", got, want)
	}
	// every claim served is advertised
	for k := range got {
		if !slices.Contains(Supported, k) {
			t.Errorf("claim %q is served but not in Supported", k)
		}
	}
}

func TestForScopesMinimalUser(t *testing.T) {
	u := &users.User{Name: "bob", DisplayName: "bob"}
	got := ForScopes(u, []string{"openid", "profile", "email", "phone", "address", "groups"})
	want := map[string]any{"name": "bob", "preferred_username": "bob", "groups": []string{}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("claims:\n got %#v\nwant %#v", got, want)
	}
	// an empty display name (a User not from the users file) falls back to the username
	got = ForScopes(&users.User{Name: "bob"}, []string{"profile"})
	if got["name"] != "bob" {
		t.Fatalf("name without a display name: %#v", got)
	}
}

func TestForScopesPerScope(t *testing.T) {
	u := fullUser()
	cases := map[string][]string{
		"openid":         nil,
		"offline_access": nil,
		"unknown":        nil,
		"email":          {"email", "email_verified", "alt_emails"},
		"phone":          {"phone_number", "phone_number_verified"},
		"address":        {"address"},
		"groups":         {"groups"},
	}
	for scope, keys := range cases {
		got := ForScopes(u, []string{scope})
		var names []string
		for k := range got {
			names = append(names, k)
		}
		slices.Sort(names)
		want := slices.Clone(keys)
		slices.Sort(want)
		if !slices.Equal(names, want) {
			t.Errorf("scope %s: claims %v, want %v", scope, names, want)
		}
		if !slices.Equal(ClaimsOf(scope), keys) && len(keys) > 0 {
			t.Errorf("ClaimsOf(%s) = %v, want %v", scope, ClaimsOf(scope), keys)
		}
	}
	if got := ForScopes(nil, []string{"profile"}); len(got) != 0 {
		t.Fatalf("a nil user released %v", got)
	}
}

func TestEmailAndPhoneDetails(t *testing.T) {
	u := &users.User{Name: "a", Emails: []string{"a@example.com"}}
	got := ForScopes(u, []string{"email", "email"})
	if _, ok := got["alt_emails"]; ok || got["email"] != "a@example.com" || got["email_verified"] != true {
		t.Fatalf("one address: %#v", got)
	}
	u.Profile.PhoneNumber = "+33 1 23 45 67 89"
	got = ForScopes(u, []string{"phone"})
	if got["phone_number"] != "+33 1 23 45 67 89" || got["phone_number_verified"] != false {
		t.Fatalf("phone without extension: %#v", got)
	}
	u.Profile.PhoneNumber, u.Profile.PhoneExtension = "", "99"
	if got := ForScopes(u, []string{"phone"}); len(got) != 0 {
		t.Fatalf("an extension without a number released %#v", got)
	}
	// the returned lists are copies
	u = fullUser()
	got = ForScopes(u, []string{"email", "groups"})
	got["groups"].([]string)[0] = "changed"
	got["alt_emails"].([]string)[0] = "changed"
	if u.Groups[0] != "admins" || u.Emails[1] != "jd@example.org" {
		t.Fatal("ForScopes shares the user's slices")
	}
}

func TestAddressParts(t *testing.T) {
	u := &users.User{Name: "a", Profile: users.Profile{Address: &users.Address{}}}
	if got := ForScopes(u, []string{"address"}); len(got) != 0 {
		t.Fatalf("an empty address released %#v", got)
	}
	u.Profile.Address = &users.Address{Locality: "Paris", Country: "FR"}
	got := ForScopes(u, []string{"address"})
	want := map[string]any{"locality": "Paris", "country": "FR", "formatted": "Paris\nFR"}
	if !reflect.DeepEqual(got["address"], want) {
		t.Fatalf("address: %#v", got["address"])
	}
}

func TestSupportedLists(t *testing.T) {
	for _, c := range []string{"sub", "iss", "aud", "amr", "auth_time", "nonce", "name", "email", "alt_emails", "groups", "address", "phone_number_verified", "rat"} {
		if !slices.Contains(Supported, c) {
			t.Errorf("Supported lacks %q", c)
		}
	}
	sorted := slices.Clone(Supported)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != len(Supported) {
		t.Errorf("Supported has duplicates: %v", Supported)
	}
	want := []string{"openid", "offline_access", "profile", "email", "address", "phone", "groups"}
	if !slices.Equal(ScopesSupported, want) {
		t.Errorf("ScopesSupported = %v", ScopesSupported)
	}
}

func TestFilterIDToken(t *testing.T) {
	all := ForScopes(fullUser(), []string{"profile", "email", "groups"})
	if got := FilterIDToken(all, nil); !reflect.DeepEqual(got, all) {
		t.Fatalf("nil policy changed the claims: %#v", got)
	}
	if got := FilterIDToken(all, []string{}); len(got) != 0 {
		t.Fatalf("empty policy kept %#v", got)
	}
	got := FilterIDToken(all, []string{"email", "groups", "phone_number"})
	want := map[string]any{"email": "john@example.com", "groups": []string{"admins", "dev"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("filtered: %#v", got)
	}
	delete(got, "email")
	if _, ok := all["email"]; !ok {
		t.Fatal("FilterIDToken returned the input map")
	}
}

func TestAMR(t *testing.T) {
	cases := []struct {
		password, totp, webauthn, uv bool
		want                         []string
	}{
		{false, false, false, false, nil},
		{true, false, false, false, []string{"pwd"}},
		{true, true, false, false, []string{"pwd", "otp", "mfa"}},
		{true, false, true, false, []string{"pwd", "hwk", "user", "mfa"}},
		{true, false, true, true, []string{"pwd", "hwk", "user", "pin", "mfa"}},
		{false, false, true, true, []string{"hwk", "user", "pin", "mfa"}}, // a passkey sign-in
		{false, false, true, false, []string{"hwk", "user"}},
		{false, true, false, false, []string{"otp"}},
		{true, false, false, true, []string{"pwd"}}, // user verification without WebAuthn is ignored
		{true, true, true, true, []string{"pwd", "otp", "hwk", "user", "pin", "mfa"}},
	}
	for _, c := range cases {
		if got := AMR(c.password, c.totp, c.webauthn, c.uv); !slices.Equal(got, c.want) {
			t.Errorf("AMR(%v, %v, %v, %v) = %q, want %q", c.password, c.totp, c.webauthn, c.uv, got, c.want)
		}
	}
}
