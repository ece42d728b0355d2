package oauth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/ory/fosite"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider/clientaddr"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// This file is the /device page as the browser goes through it (RFC 8628 §3.3): the person
// types the user code (or opens verification_uri_complete, which fills it in for them to
// check: never an approval by itself), signs in with the factors the client's authorization
// policy asks for, and approves or refuses on a consent page that names the application and
// what it asks for. Wrong codes are counted per address (and in total) before they are looked
// up. device.go holds the records the answer goes to.

// DevicePages renders the /device page in its states; the portal implements it.
type DevicePages interface {
	// RenderDevice shows the device page d.
	RenderDevice(w http.ResponseWriter, r *http.Request, d *DevicePage)
}

// The states of the device page (DevicePage.State).
const (
	// DeviceEnter asks for the user code (pre-filled from verification_uri_complete).
	DeviceEnter = "enter"
	// DeviceConsent asks the signed-in person to approve or refuse the device.
	DeviceConsent = "consent"
	// DeviceApproved and DeviceDenied confirm the answer.
	DeviceApproved = "approved"
	DeviceDenied   = "denied"
	// DeviceLocked refuses an address that typed too many wrong codes.
	DeviceLocked = "locked"
)

// DevicePage is what the device page shows; its forms post to PathDevice with the fields
// "csrf", "action" ("code", "approve" or "deny"), "user_code" and "flow".
type DevicePage struct {
	// State is one of DeviceEnter, DeviceConsent, DeviceApproved, DeviceDenied, DeviceLocked.
	State string
	// Status is the HTTP status of the answer.
	Status int
	// UserCode is the code as shown (XXXX-XXXX) or as typed; Prefilled marks a code that came
	// in the link, for the person to check against their device.
	UserCode  string
	Prefilled bool
	// Error says what went wrong with the last form, in words for people; "" for none.
	Error string
	// Username is the signed-in person (consent and after).
	Username string
	// ClientID and ClientName name the application; Scopes and Audience are what it asks for.
	ClientID, ClientName string
	Scopes, Audience     []string
	// Flow names the saved device request the consent form answers.
	Flow string
}

// Guessing user codes: each address may type deviceGuessSlots wrong codes in any
// deviceGuessWindow (slots claimed in the store, so across nodes) before the page refuses to look
// codes up for it. More than deviceTotalGuesses wrong codes from anywhere in that time (per node,
// in memory) are logged as guessing from many addresses, and refused to no one: a lock for
// everyone would let a few dozen addresses stop every device sign-in of the service, while the
// code's 40 bits, its minutes of life and the per-address slots keep distributed guessing hopeless.
const (
	deviceGuessSlots   = 5
	deviceGuessWindow  = 15 * time.Minute
	deviceTotalGuesses = 300
)

// deviceFlowRecord is a user code the browser typed right, kept while its person signs in.
type deviceFlowRecord struct {
	Sig      string `json:"sig"`
	UserCode string `json:"user_code"`
	Binding  string `json:"binding"`
}

func deviceFlowKey(id string) []byte { return []byte("device-flow/" + id) }

// newDeviceGuesses is the provider-wide bucket of wrong user codes.
func newDeviceGuesses() *clients.Limiter {
	return clients.NewLimiter(deviceTotalGuesses, deviceGuessWindow/deviceTotalGuesses, 1)
}

// ServeDevice is the /device page (verification_uri): GET shows the code form (filled in from
// user_code) or, with flow, resumes a typed code after the sign-in; POST takes the code form
// ("action=code") and the consent form ("action=approve" or "deny").
func (f *Flow) ServeDevice(w http.ResponseWriter, r *http.Request) {
	if f.cfg.Device == nil {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		q := r.URL.Query()
		if id := q.Get("flow"); id != "" {
			f.resumeDevice(w, r, id)
			return
		}
		shown := q.Get("user_code")
		if n, ok := NormalUserCode(shown); ok {
			shown = FormatUserCode(n)
		} else if len(shown) > 16 {
			shown = ""
		}
		f.cfg.Device.RenderDevice(w, r, &DevicePage{State: DeviceEnter, Status: http.StatusOK, UserCode: shown, Prefilled: shown != ""})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
		if !f.cfg.Portal.CheckCSRF(r) {
			f.cfg.Portal.RenderError(w, r, http.StatusForbidden, "This form has expired", "The form was sent without its security token, or the token expired. Open the device page again and type the code.")
			return
		}
		switch r.PostFormValue("action") {
		case "code":
			f.deviceCode(w, r)
		case "approve":
			f.deviceAnswer(w, r, true)
		case "deny":
			f.deviceAnswer(w, r, false)
		default:
			f.cfg.Portal.RenderError(w, r, http.StatusBadRequest, "This form is incomplete", "Open the device page again and type the code.")
		}
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		f.cfg.Portal.RenderError(w, r, http.StatusMethodNotAllowed, "This address takes GET or POST", "Open the device page again and type the code.")
	}
}

// deviceEnterAgain shows the code form again with a message.
func (f *Flow) deviceEnterAgain(w http.ResponseWriter, r *http.Request, status int, typed, msg string) {
	if len(typed) > 16 {
		typed = ""
	}
	f.cfg.Device.RenderDevice(w, r, &DevicePage{State: DeviceEnter, Status: status, UserCode: typed, Error: msg})
}

// deviceUnavailable answers a page the store or the directory could not serve.
func (f *Flow) deviceUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	f.logger.Warn("device page: the store or the directory cannot answer", zap.Error(err))
	w.Header().Set("Retry-After", "5")
	f.cfg.Portal.RenderError(w, r, http.StatusServiceUnavailable, "Try again in a moment", "The sign-in service is busy or restarting. Try again in a few seconds.")
}

// deviceCode takes a typed user code: counted against the address (and the service) first,
// then looked up; a right code is given back its count and goes on to the sign-in.
func (f *Flow) deviceCode(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	typed := r.PostFormValue("user_code")
	code, ok := NormalUserCode(typed)
	if !ok {
		// cannot be any code: nothing is looked up, so nothing is counted
		f.deviceEnterAgain(w, r, http.StatusBadRequest, typed, "Type the 8 letters and digits your device shows, like WDJB-MJHT.")
		return
	}
	giveBack, locked, err := f.takeDeviceGuess(ctx, r)
	if err != nil {
		f.deviceUnavailable(w, r, err)
		return
	}
	if locked {
		w.Header().Set("Retry-After", strconv.Itoa(int(deviceGuessWindow/time.Second)))
		f.cfg.Device.RenderDevice(w, r, &DevicePage{State: DeviceLocked, Status: http.StatusTooManyRequests,
			Error: "Too many wrong codes were typed from your address. Wait 15 minutes, then type the code your device shows."})
		return
	}
	sig, rec, err := f.p.deviceByUserCode(ctx, code)
	if errors.Is(err, fosite.ErrNotFound) || (err == nil && time.Now().After(rec.ExpiresAt)) {
		f.logger.Info("device page: a wrong or expired user code", zap.String("remote_ip", f.p.cfg.ClientIP(r)))
		if _, ok := f.deviceGuesses.Take("all"); !ok && f.guessAlarm.CompareAndSwap(false, true) {
			f.logger.Warn("device page: more than 300 wrong user codes in 15 minutes, from many addresses: someone may be guessing user codes")
			time.AfterFunc(time.Minute, func() { f.guessAlarm.Store(false) }) // at most one line a minute
		}
		f.deviceEnterAgain(w, r, http.StatusBadRequest, typed, "That code is wrong or has expired. Check the code your device shows now; it may have made a new one.")
		return
	} else if err != nil {
		giveBack()
		f.deviceUnavailable(w, r, err)
		return
	}
	giveBack() // a right code counts for nothing
	if _, decided, err := f.p.loadDecision(ctx, sig); err != nil {
		f.deviceUnavailable(w, r, err)
		return
	} else if decided {
		f.deviceEnterAgain(w, r, http.StatusBadRequest, "", "That code was already answered. To connect the device again, start again on the device.")
		return
	}
	id := rand.Text()
	data, err := json.Marshal(deviceFlowRecord{Sig: sig, UserCode: code, Binding: f.cfg.Portal.BrowserBinding(w, r)})
	if err != nil {
		f.deviceUnavailable(w, r, err)
		return
	}
	ttl := min(time.Until(rec.ExpiresAt), flowLifetime)
	if err := f.p.cfg.KV.Put(ctx, store.Entry{Key: deviceFlowKey(id), Value: data, TTL: ttl}); err != nil {
		f.deviceUnavailable(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, f.deviceFlowURL(id), http.StatusSeeOther)
}

// deviceFlowURL is the absolute URL that resumes a typed code (the sign-in's return URL).
func (f *Flow) deviceFlowURL(id string) string {
	return f.p.cfg.Issuer + PathDevice + "?flow=" + url.QueryEscape(id)
}

// takeDeviceGuess takes one of the address's slots before a code is looked up; locked when none
// is free. giveBack returns it (a right code).
func (f *Flow) takeDeviceGuess(ctx context.Context, r *http.Request) (giveBack func(), locked bool, err error) {
	addr := clientaddr.KeyOf(f.p.cfg.ClientIP(r))
	for n := range deviceGuessSlots {
		key := []byte("device-guess/" + addr + "/" + strconv.Itoa(n))
		_, claimed, err := store.Claim(ctx, f.p.cfg.KV, key, deviceGuessWindow)
		if err != nil {
			return nil, false, fmt.Errorf("counting a user code: %w", err)
		}
		if !claimed {
			continue
		}
		return func() {
			_ = f.p.cfg.KV.Delete(context.WithoutCancel(ctx), key)
		}, false, nil
	}
	f.logger.Info("device page: an address typed too many wrong user codes", zap.String("remote_ip", f.p.cfg.ClientIP(r)))
	return nil, true, nil
}

// deviceFlow reads a typed code kept for this browser, and its device request and client; nil
// with the page already answered when any of them is gone.
func (f *Flow) deviceFlow(w http.ResponseWriter, r *http.Request, id string) (*deviceFlowRecord, *deviceRecord, *clients.Client) {
	ctx := r.Context()
	expired := func() {
		f.deviceEnterAgain(w, r, http.StatusBadRequest, "", "This request has expired or was already answered. Type the code your device shows.")
	}
	if len(id) > 64 {
		expired()
		return nil, nil, nil
	}
	data, err := f.p.cfg.KV.Get(ctx, deviceFlowKey(id))
	if errors.Is(err, store.ErrNotFound) {
		expired()
		return nil, nil, nil
	} else if err != nil {
		f.deviceUnavailable(w, r, err)
		return nil, nil, nil
	}
	var fr deviceFlowRecord
	if err := json.Unmarshal(data, &fr); err != nil || subtle.ConstantTimeCompare([]byte(fr.Binding), []byte(f.cfg.Portal.BrowserBinding(w, r))) != 1 {
		// another browser's request: a leaked flow id does not let anyone answer it
		expired()
		return nil, nil, nil
	}
	rec, err := f.p.loadDevice(ctx, fr.Sig)
	if errors.Is(err, fosite.ErrNotFound) || (err == nil && time.Now().After(rec.ExpiresAt)) {
		f.deviceEnterAgain(w, r, http.StatusBadRequest, "", "The code has expired. Start again on the device, and type the new code it shows.")
		return nil, nil, nil
	} else if err != nil {
		f.deviceUnavailable(w, r, err)
		return nil, nil, nil
	}
	client, ok := f.p.cfg.Clients(rec.ClientID)
	if !ok {
		f.cfg.Portal.RenderError(w, r, http.StatusBadRequest, "This device cannot be connected", "The application is no longer registered here. Tell its administrator.")
		return nil, nil, nil
	}
	return &fr, rec, client
}

// signedInForDevice is the browser's sign-in when it meets the client's authorization policy;
// otherwise it sends the browser to sign in (or add a second factor) and back, or refuses the
// device for a person the policy denies, and returns nil.
func (f *Flow) signedInForDevice(w http.ResponseWriter, r *http.Request, id string, fr *deviceFlowRecord, rec *deviceRecord, client *clients.Client) *SignIn {
	s := f.cfg.Portal.Current(r)
	if s == nil {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, f.cfg.Portal.SignInURL(f.deviceFlowURL(id), false), http.StatusSeeOther)
		return nil
	}
	switch f.cfg.Policy(r, client, s) {
	case accesscontrol.Deny:
		f.logger.Info("device refused by the client's policy", zap.String("client_id", client.ID()), zap.String("user", s.Username))
		if err := f.p.decideDevice(r.Context(), fr.Sig, rec, deviceDecision{}); err != nil && !errors.Is(err, errDeviceDecided) {
			f.deviceUnavailable(w, r, err)
			return nil
		}
		f.cfg.Device.RenderDevice(w, r, &DevicePage{State: DeviceDenied, Status: http.StatusForbidden, Username: s.Username,
			ClientID: client.ID(), ClientName: client.Config().Name, Error: "Your account may not use this application, so the device was refused."})
		return nil
	case accesscontrol.TwoFactor:
		if !s.TwoFactor {
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, f.cfg.Portal.SecondFactorURL(f.deviceFlowURL(id)), http.StatusSeeOther)
			return nil
		}
	}
	return s
}

// deviceAudience is the audience a device request is granted: what it asked for, or, for a
// client in requested_audience_mode implicit that asked for none, the client's whole list.
func deviceAudience(rec *deviceRecord, c *clients.Client) []string {
	if len(rec.Audience) > 0 || !c.ImplicitAudience() {
		return slices.Clone(rec.Audience)
	}
	return slices.Clone([]string(c.GetAudience()))
}

// resumeDevice shows the consent page for a typed code, once the browser is signed in as the
// client's policy asks. The device flow always asks: the page is where the person checks that
// the device is theirs (RFC 8628 §5.4, remote phishing), so neither consent_mode implicit nor
// a remembered consent skips it.
func (f *Flow) resumeDevice(w http.ResponseWriter, r *http.Request, id string) {
	fr, rec, client := f.deviceFlow(w, r, id)
	if fr == nil {
		return
	}
	s := f.signedInForDevice(w, r, id, fr, rec, client)
	if s == nil {
		return
	}
	f.cfg.Device.RenderDevice(w, r, &DevicePage{State: DeviceConsent, Status: http.StatusOK, UserCode: FormatUserCode(fr.UserCode),
		Username: s.Username, ClientID: client.ID(), ClientName: client.Config().Name,
		Scopes: rec.Scopes, Audience: deviceAudience(rec, client), Flow: id})
}

// deviceAnswer takes the consent form: the answer binds the device code to the person, their
// sign-in (amr, auth_time) and their portal session, once.
func (f *Flow) deviceAnswer(w http.ResponseWriter, r *http.Request, approve bool) {
	ctx := r.Context()
	id := r.PostFormValue("flow")
	fr, rec, client := f.deviceFlow(w, r, id)
	if fr == nil {
		return
	}
	s := f.signedInForDevice(w, r, id, fr, rec, client)
	if s == nil {
		return
	}
	d := deviceDecision{}
	if approve {
		sub, err := f.cfg.Subjects.Subject(ctx, s.Username, client.SectorIdentifier())
		if err != nil {
			f.deviceUnavailable(w, r, err)
			return
		}
		d = deviceDecision{Approved: true, Username: s.Username, Subject: sub, AuthTime: s.AuthTime, AMR: s.AMR, TwoFactor: s.TwoFactor,
			Scopes: rec.Scopes, Audience: deviceAudience(rec, client), BrowserSession: s.Ref}
	}
	err := f.p.decideDevice(ctx, fr.Sig, rec, d)
	if errors.Is(err, errDeviceDecided) {
		f.deviceEnterAgain(w, r, http.StatusConflict, "", "That code was already answered. To connect the device again, start again on the device.")
		return
	} else if err != nil {
		f.deviceUnavailable(w, r, err)
		return
	}
	_ = f.p.cfg.KV.Delete(ctx, deviceFlowKey(id))
	page := &DevicePage{State: DeviceDenied, Status: http.StatusOK, Username: s.Username, ClientID: client.ID(), ClientName: client.Config().Name}
	if approve {
		page.State = DeviceApproved
		f.logger.Info("device approved", zap.String("client_id", client.ID()), zap.String("user", s.Username), zap.Strings("scopes", rec.Scopes))
	} else {
		f.logger.Info("device refused", zap.String("client_id", client.ID()), zap.String("user", s.Username))
	}
	f.cfg.Device.RenderDevice(w, r, page)
}
