package totp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// ErrDeviceExists is the answer to Provision without replace for a user who has a device.
var ErrDeviceExists = errors.New("totp: the user has a device already")

// Provision makes a new secret for user and saves it at once as the user's device (on disk when
// it returns), with the configured issuer, algorithm, digits and period, without a first code
// from an app: the operator hands the returned URI to the person, whose app then shows the codes
// the device accepts (`caddy oidc users totp add`, for a first device where no notifier can send
// the code an enrolment at the portal needs). A user who has a device gets ErrDeviceExists,
// unless replace is set: then the new device replaces it, and the old one's codes stop working.
// Without replace, of calls racing for one user on any nodes sharing the store, one stores its
// device and the others get ErrDeviceExists.
func (d *Devices) Provision(ctx context.Context, user string, replace bool) (*Enrolment, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	mu := d.lock(user)
	mu.Lock()
	defer mu.Unlock()

	e, err := Enrol(d.cfg, user)
	if err != nil {
		return nil, fmt.Errorf("totp: provisioning a device: %w", err)
	}
	dk := deviceKey(user)
	rec := deviceRecord{
		Sealed:    d.sealer.Seal(e.Secret, string(dk)),
		Algorithm: d.cfg.Algorithm,
		Digits:    d.cfg.Digits,
		Period:    int64(d.cfg.Period / time.Second),
		Created:   d.now(),
	}
	value, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("totp: encoding the device: %w", err)
	}
	if !replace {
		// insert-if-absent, atomic across the nodes sharing the store
		got, err := d.kv.GetOrCreate(ctx, dk, func() ([]byte, error) { return value, nil })
		if err != nil {
			return nil, fmt.Errorf("totp: saving the device: %w", err)
		}
		if !bytes.Equal(got, value) {
			return nil, ErrDeviceExists
		}
	}
	// PutSync: on disk when the operator is told the device is there (GetOrCreate may not sync)
	if err := d.kv.PutSync(ctx, store.Entry{Key: dk, Value: value}); err != nil {
		return nil, fmt.Errorf("totp: saving the device: %w", err)
	}
	return e, nil
}
