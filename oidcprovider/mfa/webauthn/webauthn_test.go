package webauthn

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

const (
	rpID   = "example.com"
	origin = "https://auth.example.com"
)

var handleKey = bytes.Repeat([]byte("h"), 32)

// authenticator is a software security key: one ES256 credential, no attestation, as a browser
// returns its answers from PublicKeyCredential.toJSON().
type authenticator struct {
	key         *ecdsa.PrivateKey
	id          []byte
	count       uint32
	userHandle  []byte // the user.id of the registration, returned by logins (as passkeys do)
	passkey     bool   // report credProps.rk = true
	noUV        bool   // leave the UV flag out (an authenticator that did not verify the user)
	noCredProps bool   // answer no credProps (a browser that does not report it)

	// what a test changes to make a bad answer
	origin    string
	challenge string // replaces the options' challenge when set
	typ       string // replaces the client data type when set
}

func newAuthenticator(t *testing.T) *authenticator {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 32)
	rand.Read(id)
	return &authenticator{key: key, id: id, count: 1, origin: origin}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func unb64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("%q is not base64url without padding: %v", s, err)
	}
	return b
}

// creationOptions is the part of PublicKeyCredentialCreationOptionsJSON the tests look at.
type creationOptions struct {
	RP struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"rp"`
	User struct {
		ID          string `json:"id"`
		Name        string `json:"name"`
		DisplayName string `json:"displayName"`
	} `json:"user"`
	Challenge        string `json:"challenge"`
	PubKeyCredParams []struct {
		Type string `json:"type"`
		Alg  int    `json:"alg"`
	} `json:"pubKeyCredParams"`
	Timeout            int `json:"timeout"`
	ExcludeCredentials []struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	} `json:"excludeCredentials"`
	AuthenticatorSelection struct {
		ResidentKey      string `json:"residentKey"`
		UserVerification string `json:"userVerification"`
	} `json:"authenticatorSelection"`
	Attestation string          `json:"attestation"`
	Extensions  map[string]bool `json:"extensions"`
}

// requestOptions is the part of PublicKeyCredentialRequestOptionsJSON the tests look at.
type requestOptions struct {
	Challenge        string `json:"challenge"`
	Timeout          int    `json:"timeout"`
	RPID             string `json:"rpId"`
	AllowCredentials []struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	} `json:"allowCredentials"`
	UserVerification string `json:"userVerification"`
}

func (a *authenticator) clientData(t *testing.T, typ, challenge string) []byte {
	t.Helper()
	if a.typ != "" {
		typ = a.typ
	}
	if a.challenge != "" {
		challenge = a.challenge
	}
	cd, err := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": a.origin, "crossOrigin": false})
	if err != nil {
		t.Fatal(err)
	}
	return cd
}

// authData is the authenticator data: rpIdHash, flags, signCount and, with attested, the
// attested credential data (zero AAGUID, credential id, COSE EC2 public key).
func (a *authenticator) authData(t *testing.T, rp string, attested bool) []byte {
	t.Helper()
	hash := sha256.Sum256([]byte(rp))
	flags := byte(0x01 | 0x04) // UP | UV
	if a.noUV {
		flags &^= 0x04
	}
	if attested {
		flags |= 0x40 // AT
	}
	data := append(hash[:], flags)
	data = binary.BigEndian.AppendUint32(data, a.count)
	if attested {
		data = append(data, make([]byte, 16)...) // AAGUID
		data = binary.BigEndian.AppendUint16(data, uint16(len(a.id)))
		data = append(data, a.id...)
		raw, err := a.key.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			t.Fatal(err)
		}
		cose, err := ctap2(t).Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: raw[1:33], -3: raw[33:65]})
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, cose...)
	}
	return data
}

func ctap2(t *testing.T) cbor.EncMode {
	t.Helper()
	em, err := cbor.CTAP2EncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	return em
}

// register answers creation options as navigator.credentials.create() and toJSON() would.
func (a *authenticator) register(t *testing.T, options []byte) []byte {
	t.Helper()
	var o creationOptions
	if err := json.Unmarshal(options, &o); err != nil {
		t.Fatal(err)
	}
	a.userHandle = unb64(t, o.User.ID)
	cd := a.clientData(t, "webauthn.create", o.Challenge)
	att, err := ctap2(t).Marshal(map[string]any{
		"fmt": "none", "attStmt": map[string]any{}, "authData": a.authData(t, o.RP.ID, true),
	})
	if err != nil {
		t.Fatal(err)
	}
	ext := map[string]any{}
	if o.Extensions["credProps"] && !a.noCredProps {
		ext["credProps"] = map[string]bool{"rk": a.passkey}
	}
	resp, err := json.Marshal(map[string]any{
		"id": b64(a.id), "rawId": b64(a.id), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON": b64(cd), "attestationObject": b64(att), "transports": []string{"usb"},
		},
		"clientExtensionResults":  ext,
		"authenticatorAttachment": "cross-platform",
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// login answers request options as navigator.credentials.get() and toJSON() would.
func (a *authenticator) login(t *testing.T, options []byte) []byte {
	t.Helper()
	var o requestOptions
	if err := json.Unmarshal(options, &o); err != nil {
		t.Fatal(err)
	}
	a.count++
	cd := a.clientData(t, "webauthn.get", o.Challenge)
	ad := a.authData(t, o.RPID, false)
	cdHash := sha256.Sum256(cd)
	digest := sha256.Sum256(append(bytes.Clone(ad), cdHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	resp, err := json.Marshal(map[string]any{
		"id": b64(a.id), "rawId": b64(a.id), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON": b64(cd), "authenticatorData": b64(ad), "signature": b64(sig),
			"userHandle": b64(a.userHandle),
		},
		"clientExtensionResults":  map[string]any{},
		"authenticatorAttachment": "cross-platform",
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// clock is the tests' settable clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func openStore(t *testing.T, dir string) *store.Badger {
	t.Helper()
	db, err := store.Open(dir, store.Options{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newDevices(t *testing.T, kv store.KV) (*Devices, *clock) {
	t.Helper()
	d, err := New(Config{RPID: rpID, RPOrigins: []string{origin}}, kv, handleKey)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	d.now = c.now
	return d, c
}

// register registers a for user through a whole ceremony.
func register(t *testing.T, d *Devices, a *authenticator, user, name string) *Credential {
	ctx := t.Context()
	t.Helper()
	options, err := d.BeginRegistration(ctx, user, "", "reg-"+user)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := d.FinishRegistration(ctx, user, "", "reg-"+user, name, a.register(t, options))
	if err != nil {
		t.Fatalf("registering: %v", err)
	}
	return cred
}

// login signs user in with a through a whole ceremony.
func login(t *testing.T, d *Devices, a *authenticator, user string) error {
	ctx := t.Context()
	t.Helper()
	options, err := d.BeginLogin(ctx, user, "login-"+user)
	if err != nil {
		return err
	}
	return d.FinishLogin(ctx, user, "login-"+user, a.login(t, options))
}

func TestRegisterListLogin(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d, clk := newDevices(t, db)
	a := newAuthenticator(t)
	a.passkey = true

	if list, err := d.List(ctx, "john"); err != nil || len(list) != 0 {
		t.Fatalf("list before registering: %v %v", list, err)
	}
	if _, err := d.BeginLogin(ctx, "john", "k"); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("login without a device: %v", err)
	}

	options, err := d.BeginRegistration(ctx, "john", "John Doe", "k1")
	if err != nil {
		t.Fatal(err)
	}
	var o creationOptions
	if err := json.Unmarshal(options, &o); err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, handleKey)
	mac.Write([]byte("john"))
	switch {
	case o.RP.ID != rpID || o.RP.Name != "Portcullis":
		t.Errorf("rp %+v", o.RP)
	case !bytes.Equal(unb64(t, o.User.ID), mac.Sum(nil)) || o.User.Name != "john" || o.User.DisplayName != "John Doe":
		t.Errorf("user %+v", o.User)
	case len(unb64(t, o.Challenge)) < 16:
		t.Errorf("challenge %q", o.Challenge)
	case o.Timeout != 60000:
		t.Errorf("timeout %d", o.Timeout)
	case o.AuthenticatorSelection.ResidentKey != "preferred" || o.AuthenticatorSelection.UserVerification != "preferred":
		t.Errorf("authenticator selection %+v", o.AuthenticatorSelection)
	case o.Attestation != "none":
		t.Errorf("attestation %q", o.Attestation)
	case len(o.PubKeyCredParams) == 0 || o.PubKeyCredParams[0].Alg != -7:
		t.Errorf("parameters %+v", o.PubKeyCredParams)
	case len(o.ExcludeCredentials) != 0:
		t.Errorf("exclusions %+v", o.ExcludeCredentials)
	}
	if strings.Contains(string(options), `"publicKey"`) {
		t.Error("the options must be the value under publicKey, not the whole CredentialCreation")
	}
	clk.t = clk.t.Add(10 * time.Second)
	cred, err := d.FinishRegistration(ctx, "john", "John Doe", "k1", "  My\tYubiKey \n", a.register(t, options))
	if err != nil {
		t.Fatal(err)
	}
	want := Credential{
		ID: b64(a.id), Name: "MyYubiKey", Created: clk.t, Discoverable: true, Passkey: true, // rk and UV
		AAGUID: "00000000-0000-0000-0000-000000000000",
	}
	if *cred != want {
		t.Fatalf("credential %+v, want %+v", *cred, want)
	}
	list, err := d.List(ctx, "john")
	if err != nil || len(list) != 1 || list[0] != want {
		t.Fatalf("list %+v %v", list, err)
	}
	// the registration ceremony was consumed
	if _, err := d.FinishRegistration(ctx, "john", "", "k1", "", a.register(t, options)); !errors.Is(err, ErrNoCeremony) {
		t.Fatalf("finishing a registration twice: %v", err)
	}

	// a second registration excludes the first credential
	options, err = d.BeginRegistration(ctx, "john", "", "k2")
	if err != nil {
		t.Fatal(err)
	}
	o = creationOptions{}
	if err := json.Unmarshal(options, &o); err != nil {
		t.Fatal(err)
	}
	if len(o.ExcludeCredentials) != 1 || o.ExcludeCredentials[0].ID != b64(a.id) || o.ExcludeCredentials[0].Type != "public-key" {
		t.Fatalf("exclusions %+v", o.ExcludeCredentials)
	}
	// an authenticator that registers anyway is refused
	if _, err := d.FinishRegistration(ctx, "john", "", "k2", "", a.register(t, options)); !errors.Is(err, ErrVerification) {
		t.Fatalf("registering a credential twice: %v", err)
	}

	// login
	options, err = d.BeginLogin(ctx, "john", "k3")
	if err != nil {
		t.Fatal(err)
	}
	var r requestOptions
	if err := json.Unmarshal(options, &r); err != nil {
		t.Fatal(err)
	}
	if r.RPID != rpID || len(unb64(t, r.Challenge)) < 16 || r.UserVerification != "preferred" || r.Timeout != 60000 ||
		len(r.AllowCredentials) != 1 || r.AllowCredentials[0].ID != b64(a.id) {
		t.Fatalf("request options %s", options)
	}
	clk.t = clk.t.Add(30 * time.Second)
	if err := d.FinishLogin(ctx, "john", "k3", a.login(t, options)); err != nil {
		t.Fatalf("login: %v", err)
	}
	if list, _ := d.List(ctx, "john"); !list[0].LastUsed.Equal(clk.t) {
		t.Fatalf("last used %v, want %v", list[0].LastUsed, clk.t)
	}
	// the sign count was stored: the next login counts on
	if err := login(t, d, a, "john"); err != nil {
		t.Fatal(err)
	}
	recs, err := d.records(ctx, "john")
	if err != nil || recs[0].Credential.Authenticator.SignCount != a.count {
		t.Fatalf("stored sign count %d, want %d (%v)", recs[0].Credential.Authenticator.SignCount, a.count, err)
	}
	if recs[0].Credential.Authenticator.Attachment != "cross-platform" || !recs[0].Credential.Flags.UserPresent ||
		len(recs[0].Credential.PublicKey) == 0 {
		t.Fatalf("stored credential %+v", recs[0].Credential)
	}
}

func TestLoginFailures(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d, _ := newDevices(t, db)
	a := newAuthenticator(t)
	register(t, d, a, "john", "")

	begin := func() []byte {
		t.Helper()
		options, err := d.BeginLogin(ctx, "john", "k")
		if err != nil {
			t.Fatal(err)
		}
		return options
	}
	fail := func(what string, response []byte, want error) {
		t.Helper()
		err := d.FinishLogin(ctx, "john", "k", response)
		t.Logf("%s: %v", what, err)
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", what, err, want)
		}
	}

	a.origin = "https://evil.example.net"
	fail("a wrong origin", a.login(t, begin()), ErrVerification)
	a.origin = origin

	a.challenge = b64(bytes.Repeat([]byte{7}, 32))
	fail("a wrong challenge", a.login(t, begin()), ErrVerification)
	a.challenge = ""

	a.typ = "webauthn.create"
	fail("a registration's client data", a.login(t, begin()), ErrVerification)
	a.typ = ""

	good := a.login(t, begin())
	var tampered map[string]any
	if err := json.Unmarshal(good, &tampered); err != nil {
		t.Fatal(err)
	}
	sig := unb64(t, tampered["response"].(map[string]any)["signature"].(string))
	sig[len(sig)-1] ^= 1
	tampered["response"].(map[string]any)["signature"] = b64(sig)
	bad, _ := json.Marshal(tampered)
	fail("a bad signature", bad, ErrVerification)
	// the ceremony was consumed by the failure: the good answer comes too late
	fail("a consumed ceremony", good, ErrNoCeremony)

	options := begin()
	response := a.login(t, options)
	if err := d.FinishLogin(ctx, "john", "k", response); err != nil {
		t.Fatal(err)
	}
	fail("a replayed ceremony", response, ErrNoCeremony)
	begin()
	fail("a replayed answer in a new ceremony", response, ErrVerification)

	// another ceremony key, or no key
	d.BeginLogin(ctx, "john", "k")
	if err := d.FinishLogin(ctx, "john", "other", a.login(t, options)); !errors.Is(err, ErrNoCeremony) {
		t.Errorf("another ceremony key: %v", err)
	}
	if err := d.FinishLogin(ctx, "john", "", a.login(t, options)); !errors.Is(err, ErrNoCeremony) {
		t.Errorf("no ceremony key: %v", err)
	}

	fail("garbage", begin()[:0], ErrVerification)
	fail("not an assertion", a.register(t, begin()), ErrVerification)

	// a user handle that is not the user's
	handle := a.userHandle
	a.userHandle = bytes.Repeat([]byte{1}, 32)
	fail("another user handle", a.login(t, begin()), ErrVerification)
	a.userHandle = handle

	// a sign count that goes backwards, as a cloned authenticator's would
	recs, err := d.records(ctx, "john")
	if err != nil {
		t.Fatal(err)
	}
	clone := *a
	clone.count = recs[0].Credential.Authenticator.SignCount - 2 // login adds one
	fail("a cloned authenticator", clone.login(t, begin()), ErrVerification)
	// the original carries on
	if err := login(t, d, a, "john"); err != nil {
		t.Fatalf("after the clone was refused: %v", err)
	}
}

func TestOtherUsersCeremoniesAndCredentials(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d, _ := newDevices(t, db)
	john, jane := newAuthenticator(t), newAuthenticator(t)
	register(t, d, john, "john", "")

	// jane has no device: john's cannot be used for her
	if _, err := d.BeginLogin(ctx, "jane", "k"); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("jane without a device: %v", err)
	}
	register(t, d, jane, "jane", "")

	// john's credential answering jane's ceremony
	options, err := d.BeginLogin(ctx, "jane", "k")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.FinishLogin(ctx, "jane", "k", john.login(t, options)); !errors.Is(err, ErrVerification) {
		t.Fatalf("john's credential for jane: %v", err)
	}
	// even with jane's user handle
	options, _ = d.BeginLogin(ctx, "jane", "k")
	johnAsJane := *john
	johnAsJane.userHandle = jane.userHandle
	if err := d.FinishLogin(ctx, "jane", "k", johnAsJane.login(t, options)); !errors.Is(err, ErrVerification) {
		t.Fatalf("john's credential with jane's user handle: %v", err)
	}

	// john's ceremony finished as jane
	options, _ = d.BeginLogin(ctx, "john", "shared-key")
	if err := d.FinishLogin(ctx, "jane", "shared-key", jane.login(t, options)); !errors.Is(err, ErrNoCeremony) {
		t.Fatalf("john's ceremony finished by jane: %v", err)
	}
	// and it is still john's to finish
	if err := d.FinishLogin(ctx, "john", "shared-key", john.login(t, options)); err != nil {
		t.Fatalf("john's own ceremony: %v", err)
	}

	// a registration ceremony is not a login ceremony
	options, _ = d.BeginRegistration(ctx, "john", "", "k")
	if err := d.FinishLogin(ctx, "john", "k", john.login(t, options)); !errors.Is(err, ErrNoCeremony) {
		t.Fatalf("a registration ceremony finished as a login: %v", err)
	}

	// a credential registered to john cannot be registered to jane too
	options, _ = d.BeginRegistration(ctx, "jane", "", "k")
	if _, err := d.FinishRegistration(ctx, "jane", "", "k", "", john.register(t, options)); !errors.Is(err, ErrVerification) {
		t.Fatalf("john's credential registered for jane: %v", err)
	}
	if list, _ := d.List(ctx, "jane"); len(list) != 1 {
		t.Fatalf("jane's credentials: %+v", list)
	}
}

func TestCeremoniesExpire(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d, clk := newDevices(t, db)
	a := newAuthenticator(t)

	options, err := d.BeginRegistration(ctx, "john", "", "k")
	if err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(time.Minute)
	if _, err := d.FinishRegistration(ctx, "john", "", "k", "", a.register(t, options)); !errors.Is(err, ErrNoCeremony) {
		t.Fatalf("an expired registration: %v", err)
	}
	options, _ = d.BeginRegistration(ctx, "john", "", "k")
	clk.t = clk.t.Add(59 * time.Second)
	if _, err := d.FinishRegistration(ctx, "john", "", "k", "", a.register(t, options)); err != nil {
		t.Fatalf("a registration in time: %v", err)
	}

	options, _ = d.BeginLogin(ctx, "john", "k")
	clk.t = clk.t.Add(time.Minute)
	if err := d.FinishLogin(ctx, "john", "k", a.login(t, options)); !errors.Is(err, ErrNoCeremony) {
		t.Fatalf("an expired login: %v", err)
	}
}

func TestRemove(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d, _ := newDevices(t, db)
	a, b := newAuthenticator(t), newAuthenticator(t)
	ca := register(t, d, a, "john", "a")
	options, _ := d.BeginRegistration(ctx, "john", "", "k")
	cb, err := d.FinishRegistration(ctx, "john", "", "k", "b", b.register(t, options))
	if err != nil {
		t.Fatal(err)
	}

	for _, id := range []string{"", "not base64url!", b64([]byte("unknown"))} {
		if err := d.Remove(ctx, "john", id); !errors.Is(err, ErrNoDevice) {
			t.Errorf("removing %q: %v", id, err)
		}
	}
	if err := d.Remove(ctx, "jane", ca.ID); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("removing john's credential as jane: %v", err)
	}
	if err := d.Remove(ctx, "john", ca.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := d.List(ctx, "john"); len(list) != 1 || list[0].ID != cb.ID {
		t.Fatalf("after removing one: %+v", list)
	}
	if err := login(t, d, a, "john"); !errors.Is(err, ErrVerification) {
		t.Fatalf("login with a removed credential: %v", err)
	}
	if err := d.Remove(ctx, "john", cb.ID); err != nil {
		t.Fatal(err)
	}
	if err := login(t, d, b, "john"); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("login after removing every credential: %v", err)
	}
	// the credential can be registered again, to anyone
	register(t, d, a, "jane", "")
}

func TestPersists(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	db := openStore(t, dir)
	d, _ := newDevices(t, db)
	a := newAuthenticator(t)
	cred := register(t, d, a, "john", "key")
	if err := db.Destruct(); err != nil {
		t.Fatal(err)
	}

	db = openStore(t, dir)
	defer db.Destruct()
	d, _ = newDevices(t, db)
	if list, err := d.List(ctx, "john"); err != nil || len(list) != 1 || list[0] != *cred {
		t.Fatalf("after reopening: %+v %v", list, err)
	}
	if err := login(t, d, a, "john"); err != nil {
		t.Fatal(err)
	}
}

func TestUsernamesDoNotCollide(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d, _ := newDevices(t, db)
	a := newAuthenticator(t)
	register(t, d, a, "a/b", "")
	for _, other := range []string{"a", "a/", "a/b/c", "b"} {
		if list, err := d.List(ctx, other); err != nil || len(list) != 0 {
			t.Errorf("%q lists the credentials of a/b: %+v %v", other, list, err)
		}
		if _, err := d.BeginLogin(ctx, other, "k"); !errors.Is(err, ErrNoDevice) {
			t.Errorf("%q begins a login with the credentials of a/b: %v", other, err)
		}
	}
	if err := login(t, d, a, "a/b"); err != nil {
		t.Fatal(err)
	}
}

func TestUserHandle(t *testing.T) {
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d, _ := newDevices(t, db)
	john, jane := d.userHandle("john"), d.userHandle("jane")
	if len(john) != 32 || bytes.Equal(john, jane) || bytes.Contains(john, []byte("john")) {
		t.Fatalf("user handles %x %x", john, jane)
	}
	other, err := New(Config{RPID: rpID, RPOrigins: []string{origin}}, db, bytes.Repeat([]byte("x"), 32))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other.userHandle("john"), john) {
		t.Fatal("the user handle does not depend on the key")
	}
	if _, err := New(Config{RPID: rpID, RPOrigins: []string{origin}}, db, []byte("short")); err == nil {
		t.Fatal("a short user handle key must be refused")
	}
	if _, err := New(Config{RPID: rpID, RPOrigins: []string{origin}}, nil, handleKey); err == nil {
		t.Fatal("no store must be refused")
	}
}

func TestConfig(t *testing.T) {
	c, err := Config{RPID: "Example.COM", RPOrigins: []string{"https://Auth.Example.com/", "https://example.com:8443"}}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.RPID != "example.com" || c.RPDisplayName != "Portcullis" || c.Timeout != time.Minute || c.UserVerification != "preferred" ||
		c.RPOrigins[0] != "https://auth.example.com" || c.RPOrigins[1] != "https://example.com:8443" {
		t.Fatalf("defaults %+v", c)
	}
	if _, err := (Config{RPID: "localhost", RPOrigins: []string{"http://localhost:8080"}}).WithDefaults(); err != nil {
		t.Fatalf("http on localhost: %v", err)
	}
	ok := Config{RPID: rpID, RPOrigins: []string{origin}}
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.RPID = "" }, "rp_id"},
		{func(c *Config) { c.RPID = "https://example.com" }, "rp_id"},
		{func(c *Config) { c.RPID = "192.0.2.1" }, "rp_id"},
		{func(c *Config) { c.RPOrigins = nil }, "rp_origins"},
		{func(c *Config) { c.RPOrigins = []string{"http://auth.example.com"} }, "rp_origins"},
		{func(c *Config) { c.RPOrigins = []string{"https://auth.example.org"} }, "rp_origins"},
		{func(c *Config) { c.RPOrigins = []string{"https://notexample.com"} }, "rp_origins"},
		{func(c *Config) { c.RPOrigins = []string{"https://auth.example.com/portal"} }, "rp_origins"},
		{func(c *Config) { c.Timeout = time.Second }, "timeout"},
		{func(c *Config) { c.Timeout = time.Hour }, "timeout"},
		{func(c *Config) { c.UserVerification = "always" }, "user_verification"},
	} {
		c := ok
		tc.change(&c)
		if _, err := New(c, nil, handleKey); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", c, err, tc.want)
		}
	}
	_, err = Config{RPID: rpID, RPOrigins: []string{origin}, UserVerification: "always"}.WithDefaults()
	if err == nil || err.Error() != `webauthn: user_verification "always": use discouraged, preferred or required` {
		t.Fatalf("user_verification error: %v", err)
	}
}

func TestRequiredUserVerification(t *testing.T) {
	ctx := t.Context()
	db := openStore(t, t.TempDir())
	defer db.Destruct()
	d, err := New(Config{RPID: rpID, RPOrigins: []string{origin}, UserVerification: "Required", Timeout: 2 * time.Minute}, db, handleKey)
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthenticator(t)
	options, err := d.BeginRegistration(ctx, "john", "", "k")
	if err != nil {
		t.Fatal(err)
	}
	var o creationOptions
	if err := json.Unmarshal(options, &o); err != nil {
		t.Fatal(err)
	}
	if o.AuthenticatorSelection.UserVerification != "required" || o.Timeout != 120000 {
		t.Fatalf("options %s", options)
	}
	if _, err := d.FinishRegistration(ctx, "john", "", "k", "", a.register(t, options)); err != nil {
		t.Fatal(err)
	}
	if err := login(t, d, a, "john"); err != nil {
		t.Fatal(err)
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"":                             DefaultName,
		"   \t\n":                      DefaultName,
		" Office key ":                 "Office key",
		"a\u0000b\u202ec":              "ab\u202ec",
		strings.Repeat("é", 70):        strings.Repeat("é", 64),
		strings.Repeat("x", 63) + " y": strings.Repeat("x", 63),
	} {
		if got := cleanName(in); got != want {
			t.Errorf("cleanName(%q) = %q, want %q", in, got, want)
		}
	}
}
