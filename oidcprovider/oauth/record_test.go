package oauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"
)

var recordTime = time.Date(2026, 11, 23, 10, 4, 5, 123456789, time.UTC)

// monitorRecord is what a client_credentials token request stores.
func monitorRecord() *tokenRecord {
	return &tokenRecord{
		RequestID:       "0b6f2a1e-5d3c-4e8f-9a7b-1c2d3e4f5a6b",
		RequestedAt:     recordTime,
		ClientID:        "uptime-kuma",
		Scopes:          []string{"authelia.bearer.authz"},
		GrantedScopes:   []string{"authelia.bearer.authz"},
		Audience:        []string{"https://status.example.com/"},
		GrantedAudience: []string{"https://status.example.com/"},
		Form: url.Values{
			"grant_type": {"client_credentials"},
			"scope":      {"authelia.bearer.authz"},
			"audience":   {"https://status.example.com/"},
		},
		Session: &Session{
			Subject:           "uptime-kuma",
			ClientCredentials: true,
			ExpiresAt:         map[fosite.TokenType]time.Time{fosite.AccessToken: recordTime.Add(time.Hour)},
		},
		Active: true,
	}
}

// userRecord is what an authorization code with its ID token's claims stores.
func userRecord() *tokenRecord {
	headers := jwt.NewHeaders()
	headers.Add("kid", "main")
	headers.Add("alg", "RS256")
	return &tokenRecord{
		RequestID:       "Not-A-UUID/request",
		RequestedAt:     recordTime,
		ClientID:        "grafana",
		Scopes:          []string{"openid", "profile", "offline_access"},
		GrantedScopes:   []string{"openid", "profile"},
		Audience:        nil,
		GrantedAudience: []string{"grafana"},
		Form: url.Values{
			"redirect_uri":    {"https://grafana.example.com/login/generic_oauth"},
			"nonce":           {"n-0S6_WzA2Mj"},
			"scope":           {"openid profile"}, // not the requested scopes' join: kept as a string
			"x-unknown-param": {"a", "", "b"},
		},
		Session: &Session{
			Subject:        "2f1e7a5c-0d4b-4c6e-8f9a-0b1c2d3e4f5a",
			Username:       "john",
			TwoFactor:      true,
			BrowserSession: "c2Vzc2lvbi1yZWY",
			ExpiresAt: map[fosite.TokenType]time.Time{
				fosite.AuthorizeCode: recordTime.Add(time.Minute),
				fosite.AccessToken:   recordTime.Add(time.Hour),
				"custom_type":        recordTime.Add(2 * time.Hour),
			},
			Claims: &jwt.IDTokenClaims{
				Subject:                         "2f1e7a5c-0d4b-4c6e-8f9a-0b1c2d3e4f5a",
				Issuer:                          "https://auth.example.com",
				Audience:                        []string{"grafana"},
				Nonce:                           "n-0S6_WzA2Mj",
				AuthTime:                        recordTime,
				RequestedAt:                     recordTime,
				AuthenticationMethodsReferences: []string{"pwd", "otp", "mfa"},
				Extra:                           map[string]any{"email": "john@example.com", "groups": []any{"admins", "dev"}},
			},
			Headers: headers,
		},
		Active: false,
	}
}

// sameRecord compares two records, the ID token's claims and headers by their JSON.
func sameRecord(t *testing.T, got, want *tokenRecord) {
	t.Helper()
	g, w := *got, *want
	var gs, ws Session
	if g.Session != nil {
		gs = *g.Session
	}
	if w.Session != nil {
		ws = *w.Session
	}
	for _, part := range [][2]any{{gs.Claims, ws.Claims}, {gs.Headers, ws.Headers}} {
		a, _ := json.Marshal(part[0])
		b, _ := json.Marshal(part[1])
		if string(a) != string(b) {
			t.Errorf("ID token part differs:\n got %s\nwant %s", a, b)
		}
	}
	gs.Claims, ws.Claims, gs.Headers, ws.Headers = nil, nil, nil, nil
	g.Session, w.Session = &gs, &ws
	if got.Session == nil {
		g.Session = nil
	}
	if want.Session == nil {
		w.Session = nil
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("record differs:\n got %#v\nwant %#v", g, w)
		if g.Session != nil && w.Session != nil {
			t.Errorf("session:\n got %#v\nwant %#v", *g.Session, *w.Session)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	noSession := monitorRecord()
	noSession.Session = nil
	noSession.Form = nil
	zeroTimes := monitorRecord()
	zeroTimes.RequestedAt = time.Time{}
	zeroTimes.Session.ExpiresAt = nil
	zeroTimes.Session.Subject = "someone-else"
	upperUUID := monitorRecord()
	upperUUID.RequestID = "0B6F2A1E-5D3C-4E8F-9A7B-1C2D3E4F5A6B" // must come back as written
	for name, rec := range map[string]*tokenRecord{
		"client_credentials": monitorRecord(),
		"user code":          userRecord(),
		"no session":         noSession,
		"zero times":         zeroTimes,
		"upper-case uuid":    upperUUID,
	} {
		t.Run(name, func(t *testing.T) {
			data, err := marshalRecord(rec)
			if err != nil {
				t.Fatal(err)
			}
			var got tokenRecord
			if err := unmarshalRecord(data, &got); err != nil {
				t.Fatalf("decoding %x: %v", data, err)
			}
			sameRecord(t, &got, rec)
		})
	}
}

// Records written as JSON by earlier versions are still read, so tokens live at an upgrade keep
// working.
func TestRecordReadsJSON(t *testing.T) {
	for _, rec := range []*tokenRecord{monitorRecord(), userRecord()} {
		data, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		var got tokenRecord
		if err := unmarshalRecord(data, &got); err != nil {
			t.Fatalf("decoding %s: %v", data, err)
		}
		sameRecord(t, &got, rec)
	}
}

// A monitor's token takes less than a quarter of the JSON it used to (which kept the form): this
// is what keeps a burst of tokens within the store's memory budget.
func TestRecordSize(t *testing.T) {
	js, _ := json.Marshal(monitorRecord())
	rec := monitorRecord()
	rec.Form = nil // as create stores a client_credentials access token
	bin, err := marshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("monitor token record: %d bytes binary, %d bytes JSON", len(bin), len(js))
	if len(bin)*4 > len(js) {
		t.Errorf("binary record is %d bytes, JSON %d: want less than a quarter", len(bin), len(js))
	}
}

func TestRecordRejectsDamage(t *testing.T) {
	data, err := marshalRecord(userRecord())
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":           {},
		"unknown version": append([]byte{0x7f}, data[1:]...),
		"trailing bytes":  append(append([]byte{}, data...), 0),
		"bad JSON":        []byte(`{"id":`),
	}
	for i := 1; i < len(data); i += 7 {
		cases[fmt.Sprintf("truncated to %d bytes", i)] = data[:i]
	}
	for name, bad := range cases {
		var rec tokenRecord
		if err := unmarshalRecord(bad, &rec); !errors.Is(err, errRecord) {
			t.Errorf("%s: got %v, want errRecord", name, err)
		}
	}
}

// FuzzRecord: no input makes the decoder panic or allocate beyond its input, and whatever it
// accepts encodes and decodes back to itself.
func FuzzRecord(f *testing.F) {
	for _, rec := range []*tokenRecord{monitorRecord(), userRecord()} {
		data, _ := marshalRecord(rec)
		f.Add(data)
		js, _ := json.Marshal(rec)
		f.Add(js)
	}
	f.Add([]byte{recordVersion1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		var rec tokenRecord
		if err := unmarshalRecord(data, &rec); err != nil {
			if !errors.Is(err, errRecord) {
				t.Fatalf("error %v does not wrap errRecord", err)
			}
			return
		}
		again, err := marshalRecord(&rec)
		if err != nil {
			if !errors.Is(err, errRecordTime) {
				t.Fatalf("a decoded record does not encode: %v", err)
			}
			return
		}
		var back tokenRecord
		if err := unmarshalRecord(again, &back); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		third, err := marshalRecord(&back)
		if err != nil || !bytes.Equal(third, again) {
			t.Fatalf("encoding is not stable: %x then %x (%v)", again, third, err)
		}
	})
}

func TestSIDOfIsKeyedAndStable(t *testing.T) {
	a := &Provider{cfg: Config{HMACSecret: []byte("0123456789abcdef0123456789abcdef")}}
	b := &Provider{cfg: Config{HMACSecret: []byte("fedcba9876543210fedcba9876543210")}}
	if a.sidOf("") != "" {
		t.Fatal("no session, no sid")
	}
	if s := a.sidOf("ref1"); s != a.sidOf("ref1") || len(s) != 24 || s == a.sidOf("ref2") || s == b.sidOf("ref1") || s == "ref1" {
		t.Fatalf("sid %q: want stable, 24 characters, distinct per ref and per secret", s)
	}
}
