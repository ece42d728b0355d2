package webauthn

// Passkey sign-in: a discoverable credential names its user (the user handle, which is the HMAC
// of the username, and the owner record of its id), so the person types nothing. User
// verification is required of every passkey ceremony whatever Config.UserVerification says: a
// passkey sign-in counts as two factors (possession and a PIN or biometric). Before a session
// exists the ceremony is bound to a key the portal derives from the browser (its CSRF cookie);
// it expires after the timeout and is consumed by the first attempt to finish it.

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/go-webauthn/webauthn/protocol"
	gowebauthn "github.com/go-webauthn/webauthn/webauthn"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// BeginPasskeyLogin begins a passkey sign-in bound to ceremonyKey: it returns the JSON of the
// PublicKeyCredentialRequestOptions (no allowed credentials, user verification required) for
// the browser's PublicKeyCredential.parseRequestOptionsFromJSON(), for a button's
// navigator.credentials.get() or a conditional one (mediation "conditional", the browser's
// autofill). A new ceremony under the same key replaces the one before.
func (d *Devices) BeginPasskeyLogin(ctx context.Context, ceremonyKey string) ([]byte, error) {
	if ceremonyKey == "" {
		return nil, errors.New("webauthn: beginning a passkey sign-in: empty ceremony key")
	}
	assertion, session, err := d.wa.BeginDiscoverableLogin(gowebauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, fmt.Errorf("webauthn: beginning a passkey sign-in: %w", err)
	}
	options, err := json.Marshal(assertion.Response)
	if err != nil {
		return nil, fmt.Errorf("webauthn: encoding the passkey sign-in options: %w", err)
	}
	if err := d.saveCeremony(ctx, "", ceremonyKey, kindPasskey, session, false); err != nil {
		return nil, err
	}
	return options, nil
}

// PasskeyOwner is the username a passkey sign-in's answer (the JSON of
// PublicKeyCredential.toJSON()) names through its credential id, before anything is verified,
// so the caller can regulate the attempt against that user; "" when the answer cannot be read
// or the credential is unknown (the caller counts it against the address alone).
func (d *Devices) PasskeyOwner(ctx context.Context, response []byte) (string, error) {
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil || len(parsed.RawID) == 0 {
		return "", nil
	}
	owner, err := d.kv.Get(ctx, ownerKey(parsed.RawID))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("webauthn: looking the credential up: %w", err)
	}
	return string(owner), nil
}

// FinishPasskeyLogin verifies the answer to the passkey sign-in begun with ceremonyKey and
// returns the user it signs in. The ceremony is consumed whatever the outcome. It returns
// ErrNoCeremony; ErrNoDevice for a credential id no user has (never registered, or removed); an
// error wrapping ErrVerification for an answer that does not verify: a bad signature, a user
// handle that is not the credential owner's, no user verification, a sign count that did not
// increase; or the username, once the credential's sign count and last use are stored. A
// credential that signs in this way is marked a passkey (it proved itself discoverable, with
// user verification).
func (d *Devices) FinishPasskeyLogin(ctx context.Context, ceremonyKey string, response []byte) (string, error) {
	ceremony, err := d.takeCeremony(ctx, "", ceremonyKey, kindPasskey)
	if err != nil {
		return "", err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return "", verificationError("parsing the passkey sign-in", err)
	}
	username, err := d.PasskeyOwner(ctx, response)
	if err != nil {
		return "", err
	}
	if username == "" {
		return "", ErrNoDevice
	}
	mu := d.lock(username)
	mu.Lock()
	defer mu.Unlock()

	recs, err := d.records(ctx, username)
	if err != nil {
		return "", err
	}
	i := slices.IndexFunc(recs, func(r *credentialRecord) bool { return string(r.Credential.ID) == string(parsed.RawID) })
	if i < 0 {
		return "", ErrNoDevice // removed since the owner was read
	}
	if !parsed.Response.AuthenticatorData.Flags.HasUserVerified() {
		return "", fmt.Errorf("%w: a passkey sign-in without user verification", ErrVerification)
	}
	// the user handle the authenticator kept must be the owner's: go-webauthn checks it too
	owner := d.user(username, "", recs)
	cred, err := d.wa.ValidateDiscoverableLogin(func(rawID, userHandle []byte) (gowebauthn.User, error) {
		if subtle.ConstantTimeCompare(userHandle, owner.id) != 1 {
			return nil, errors.New("the user handle is not the credential owner's")
		}
		return owner, nil
	}, ceremony.Session, parsed)
	if err != nil {
		return "", verificationError("verifying the passkey sign-in", err)
	}
	if cred.Authenticator.CloneWarning {
		return "", fmt.Errorf("%w: the sign count did not increase: the authenticator may have been cloned", ErrVerification)
	}
	rec := recs[i]
	rec.Credential, rec.LastUsed = *cred, d.now()
	rec.Discoverable, rec.Passkey = true, true
	if err := d.putRecord(ctx, username, rec); err != nil {
		return "", err
	}
	return username, nil
}

// Rename gives the user's credential with id (as List gives it) a new name (cleaned as
// FinishRegistration cleans one), on disk when it returns; an id the user does not have is
// ErrNoDevice.
func (d *Devices) Rename(ctx context.Context, username, id, name string) error {
	if err := checkUser(username); err != nil {
		return err
	}
	mu := d.lock(username)
	mu.Lock()
	defer mu.Unlock()
	recs, err := d.records(ctx, username)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(recs, func(r *credentialRecord) bool { return enc(r.Credential.ID) == id })
	if i < 0 {
		return ErrNoDevice
	}
	rec := recs[i]
	rec.Name = cleanName(name)
	value, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("webauthn: encoding the credential: %w", err)
	}
	if err := d.kv.PutSync(ctx, store.Entry{Key: credentialKey(username, rec.Credential.ID), Value: value}); err != nil {
		return fmt.Errorf("webauthn: renaming the credential: %w", err)
	}
	return nil
}
