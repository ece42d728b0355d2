package totp

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// DeviceInfo is what a page shows about a user's TOTP device (no secret).
type DeviceInfo struct {
	// Created is when the enrolment was finished.
	Created time.Time
	// LastUsed is when a code was last accepted to sign in; zero if never.
	LastUsed time.Time
	// Algorithm is the HMAC algorithm the device was enrolled with: SHA1, SHA256 or SHA512.
	Algorithm string
	// Digits is how many digits the device's codes have (6 or 8).
	Digits int
	// Period is the device's time step.
	Period time.Duration
}

// ErrNoDevice is the answer for a user who has no TOTP device.
var ErrNoDevice = errors.New("totp: no device")

// ErrNoEnrolment is the answer to FinishEnrolment when no enrolment was started for the user
// and key, or when it expired.
var ErrNoEnrolment = errors.New("totp: no enrolment in progress, or it expired")

// EnrolmentTTL is how long an enrolment started by StartEnrolment can be finished.
const EnrolmentTTL = 10 * time.Minute

// Key prefixes in the store. The username is base64url-encoded in every key, so no username
// (even one holding '/') can reach into another user's keys.
const (
	devicePrefix  = "mfa/totp/device/"
	pendingPrefix = "mfa/totp/pending/"
	// usedPrefix holds one claim per accepted time step (see Check): the user, a digest of the
	// device's sealed secret (so a new device does not inherit the old one's claims) and the
	// step follow.
	usedPrefix = "mfa/totp/used/"
)

// lockStripes is the number of mutexes that serialise the checks of a user's codes.
const lockStripes = 64

// Devices keeps each user's TOTP device (one per user, as Authelia does) in the store, with
// its secret sealed. It is safe for concurrent use.
type Devices struct {
	cfg    Config
	kv     store.KV
	sealer *Sealer
	now    func() time.Time

	seed  maphash.Seed
	locks [lockStripes]sync.Mutex
}

// deviceRecord is a device as stored. The secret is sealed to the user; the algorithm, digits
// and period are those of the enrolment, so a later configuration change does not break it.
type deviceRecord struct {
	Sealed    []byte    `json:"sealed"`
	Algorithm string    `json:"algorithm"`
	Digits    int       `json:"digits"`
	Period    int64     `json:"period_seconds"`
	Created   time.Time `json:"created"`
	LastUsed  time.Time `json:"last_used,omitzero"`
	LastStep  uint64    `json:"last_step"`
}

// pendingRecord is an enrolment waiting for its first code.
type pendingRecord struct {
	Sealed    []byte    `json:"sealed"`
	Algorithm string    `json:"algorithm"`
	Digits    int       `json:"digits"`
	Period    int64     `json:"period_seconds"`
	Expires   time.Time `json:"expires"`
}

// NewDevices keeps TOTP devices in kv, their secrets sealed by sealer. cfg is passed through
// cfg.WithDefaults.
func NewDevices(cfg Config, kv store.KV, sealer *Sealer) (*Devices, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if kv == nil {
		return nil, errors.New("totp: devices need a store")
	}
	if sealer == nil {
		return nil, errors.New("totp: devices need a sealer")
	}
	return &Devices{cfg: cfg, kv: kv, sealer: sealer, now: time.Now, seed: maphash.MakeSeed()}, nil
}

// Config returns the configuration new enrolments use, defaults filled in.
func (d *Devices) Config() Config {
	c := d.cfg
	skew := *c.Skew
	c.Skew = &skew
	return c
}

// Info describes the user's device, or returns ErrNoDevice.
func (d *Devices) Info(ctx context.Context, user string) (*DeviceInfo, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	rec, err := d.device(ctx, user)
	if err != nil {
		return nil, err
	}
	return &DeviceInfo{
		Created: rec.Created, LastUsed: rec.LastUsed, Algorithm: rec.Algorithm,
		Digits: rec.Digits, Period: time.Duration(rec.Period) * time.Second,
	}, nil
}

// StartEnrolment makes a new secret for user and keeps it, sealed, for EnrolmentTTL under a
// record bound to user and key (an opaque value the portal binds to the browser session), until
// FinishEnrolment confirms that the user's app shows the right codes. Starting again with the
// same key replaces the pending secret. The user's current device, if any, stays in use until
// then.
func (d *Devices) StartEnrolment(ctx context.Context, user, key string) (*Enrolment, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	if key == "" {
		return nil, errors.New("totp: starting an enrolment: empty enrolment key")
	}
	e, err := Enrol(d.cfg, user)
	if err != nil {
		return nil, fmt.Errorf("totp: starting an enrolment: %w", err)
	}
	pk := pendingKey(user, key)
	rec := pendingRecord{
		Sealed:    d.sealer.Seal(e.Secret, string(pk)),
		Algorithm: d.cfg.Algorithm,
		Digits:    d.cfg.Digits,
		Period:    int64(d.cfg.Period / time.Second),
		Expires:   d.now().Add(EnrolmentTTL),
	}
	value, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("totp: starting an enrolment: %w", err)
	}
	if err := d.kv.Put(ctx, store.Entry{Key: pk, Value: value, TTL: EnrolmentTTL}); err != nil {
		return nil, fmt.Errorf("totp: saving the pending enrolment: %w", err)
	}
	return e, nil
}

// FinishEnrolment checks code against the secret StartEnrolment made for user and key. A wrong
// code is ErrWrongCode, and the enrolment stays so that the user can try again; no enrolment, or
// an expired one, is ErrNoEnrolment. On success the device is saved (on disk when it returns),
// replacing the user's previous device, with the matched step as its last one, so the code just
// entered cannot also be used to sign in; the pending enrolment is removed.
func (d *Devices) FinishEnrolment(ctx context.Context, user, key, code string, now time.Time) error {
	if err := checkUser(user); err != nil {
		return err
	}
	mu := d.lock(user)
	mu.Lock()
	defer mu.Unlock()

	pk := pendingKey(user, key)
	raw, err := d.kv.Get(ctx, pk)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrNoEnrolment
	case err != nil:
		return fmt.Errorf("totp: reading the pending enrolment: %w", err)
	}
	var p pendingRecord
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("totp: decoding the pending enrolment: %w", err)
	}
	if !now.Before(p.Expires) {
		// The store's TTL removes it soon; removing it now is tidier.
		_ = d.kv.Delete(ctx, pk)
		return ErrNoEnrolment
	}
	secret, err := d.sealer.Open(p.Sealed, string(pk))
	if err != nil {
		return fmt.Errorf("totp: opening the pending enrolment: %w", err)
	}
	cfg, err := d.deviceConfig(p.Algorithm, p.Digits, p.Period)
	if err != nil {
		return fmt.Errorf("totp: the pending enrolment: %w", err)
	}
	step, err := Verify(cfg, secret, code, now, 0)
	if err != nil {
		return err
	}
	dk := deviceKey(user)
	rec := deviceRecord{
		Sealed:    d.sealer.Seal(secret, string(dk)),
		Algorithm: p.Algorithm,
		Digits:    p.Digits,
		Period:    p.Period,
		Created:   now,
		LastStep:  step,
	}
	value, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("totp: encoding the device: %w", err)
	}
	if err := d.kv.PutSync(ctx, store.Entry{Key: dk, Value: value}); err != nil {
		return fmt.Errorf("totp: saving the device: %w", err)
	}
	if err := d.kv.Delete(ctx, pk); err != nil {
		return fmt.Errorf("totp: the device is saved, but removing the pending enrolment failed: %w", err)
	}
	return nil
}

// Check verifies a code from the user's device at now: ErrNoDevice, ErrWrongCode, ErrReplayed
// (the code's step, or a later one, was already used), or nil. The device's own algorithm,
// digits and period apply, with the configured skew. The matched step is stored before Check
// returns nil, so a code is accepted at most once even when submitted several times at once, to
// one node or to several sharing a store: the checks of one user's codes are serialised in the
// process, and before accepting a step Check claims it in the store with store.Claim (atomic
// across nodes); only the request whose claim is stored accepts the code, every other one gets
// ErrReplayed. The claim lives a few periods beyond the skew window, as long as the step could
// match; the device's last step still refuses the steps before it.
func (d *Devices) Check(ctx context.Context, user, code string, now time.Time) error {
	if err := checkUser(user); err != nil {
		return err
	}
	mu := d.lock(user)
	mu.Lock()
	defer mu.Unlock()

	rec, err := d.device(ctx, user)
	if err != nil {
		return err
	}
	dk := deviceKey(user)
	secret, err := d.sealer.Open(rec.Sealed, string(dk))
	if err != nil {
		return fmt.Errorf("totp: opening the device's secret: %w", err)
	}
	cfg, err := d.deviceConfig(rec.Algorithm, rec.Digits, rec.Period)
	if err != nil {
		return fmt.Errorf("totp: the stored device: %w", err)
	}
	step, err := Verify(cfg, secret, code, now, rec.LastStep)
	if err != nil {
		return err
	}
	// Another node may have read the same last step and be accepting the same code right now:
	// the process's lock cannot see it, so claim the step in the shared store first.
	claim, err := d.claimStep(ctx, user, rec, step, cfg)
	if err != nil {
		return err
	}
	rec.LastStep, rec.LastUsed = step, now
	value, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("totp: encoding the device: %w", err)
	}
	// The step is claimed (with its expiry): record it even if the caller has gone.
	wctx := context.WithoutCancel(ctx)
	if err := d.kv.Put(wctx, store.Entry{Key: dk, Value: value}, claim); err != nil {
		// the claim stays until it expires: a retry of this code is a replay
		return fmt.Errorf("totp: recording the used code: %w", err)
	}
	return nil
}

// claimStep claims step of the user's device in the store, atomically across the nodes sharing
// it, and returns the claim's entry with its expiry, for the caller to write; a step already
// claimed (by any node) is ErrReplayed.
func (d *Devices) claimStep(ctx context.Context, user string, rec *deviceRecord, step uint64, cfg Config) (store.Entry, error) {
	sum := sha256.Sum256(rec.Sealed)
	key := []byte(fmt.Sprintf("%s%s/%s/%d", usedPrefix, base64.RawURLEncoding.EncodeToString([]byte(user)),
		base64.RawURLEncoding.EncodeToString(sum[:12]), step))
	// A step matches while it is within the skew window of the current one: from skew periods
	// before it comes to skew periods after it ends. Keep the claim that long from now, and two
	// periods more for clocks that differ between nodes.
	ttl := time.Duration(2*(*cfg.Skew)+3) * cfg.Period
	mine, claimed, err := store.Claim(ctx, d.kv, key, ttl)
	if err != nil {
		return store.Entry{}, fmt.Errorf("totp: claiming the code's time step: %w", err)
	}
	if !claimed {
		return store.Entry{}, ErrReplayed
	}
	return store.Entry{Key: key, Value: mine, TTL: ttl}, nil
}

// Remove deletes the user's device (on disk when it returns), or returns ErrNoDevice.
func (d *Devices) Remove(ctx context.Context, user string) error {
	if err := checkUser(user); err != nil {
		return err
	}
	mu := d.lock(user)
	mu.Lock()
	defer mu.Unlock()

	dk := deviceKey(user)
	if _, err := d.kv.Get(ctx, dk); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrNoDevice
		}
		return fmt.Errorf("totp: reading the device: %w", err)
	}
	if err := d.kv.Delete(ctx, dk); err != nil {
		return fmt.Errorf("totp: removing the device: %w", err)
	}
	if err := d.kv.PutSync(ctx); err != nil {
		return fmt.Errorf("totp: removing the device: %w", err)
	}
	return nil
}

// device reads the user's device record.
func (d *Devices) device(ctx context.Context, user string) (*deviceRecord, error) {
	raw, err := d.kv.Get(ctx, deviceKey(user))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, ErrNoDevice
	case err != nil:
		return nil, fmt.Errorf("totp: reading the device: %w", err)
	}
	var rec deviceRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("totp: decoding the device: %w", err)
	}
	return &rec, nil
}

// deviceConfig is the configuration to verify a device's codes with: the device's algorithm,
// digits and period, and the configured skew.
func (d *Devices) deviceConfig(algorithm string, digits int, period int64) (Config, error) {
	c := d.cfg
	c.Algorithm, c.Digits, c.Period = algorithm, digits, time.Duration(period)*time.Second
	return c.WithDefaults()
}

// lock returns the mutex that serialises the user's checks.
func (d *Devices) lock(user string) *sync.Mutex {
	return &d.locks[maphash.String(d.seed, user)%lockStripes]
}

func checkUser(user string) error {
	if user == "" {
		return errors.New("totp: empty username")
	}
	return nil
}

// deviceKey is the store key of the user's device; it is also the context its secret is sealed
// to, so a record copied to another user's key does not open.
func deviceKey(user string) []byte {
	return []byte(devicePrefix + base64.RawURLEncoding.EncodeToString([]byte(user)))
}

// pendingKey is the store key of the enrolment the user started with key (hashed, since the
// portal's key may be a session secret); it is also the context the pending secret is sealed to.
func pendingKey(user, key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return []byte(pendingPrefix + base64.RawURLEncoding.EncodeToString([]byte(user)) + "/" +
		base64.RawURLEncoding.EncodeToString(sum[:]))
}
