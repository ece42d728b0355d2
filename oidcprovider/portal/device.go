package portal

import (
	"net/http"
)

// This file is the device page of the device authorization grant (RFC 8628): the provider's
// flow decides what it shows (oauth's device_browser.go), this renders it in the portal's look.

// Device is what the device page shows.
type Device struct {
	// State is "enter" (the code form), "consent", "approved", "denied" or "locked".
	State string
	// UserCode is the code as shown (XXXX-XXXX) or as typed; Prefilled marks a code that came
	// in the device's link, for the person to check.
	UserCode  string
	Prefilled bool
	// Error says what went wrong, in words for people.
	Error string
	// ClientID and ClientName name the application; Scopes and Audience are what it asks for.
	ClientID, ClientName string
	Scopes, Audience     []string
	// Flow names the saved device request the consent form answers.
	Flow string
}

// deviceView is the device page's data: the request in words for people.
type deviceView struct {
	State, UserCode string
	Prefilled       bool
	Consent         *consentView
}

// deviceTitles are the page's titles by state.
var deviceTitles = map[string]string{
	"enter":    "Connect a device",
	"consent":  "Allow this device?",
	"approved": "Device connected",
	"denied":   "Device refused",
	"locked":   "Too many wrong codes",
}

// RenderDevice shows the device page d with status; username is the signed-in person, "" for
// none.
func (p *Portal) RenderDevice(w http.ResponseWriter, r *http.Request, status int, username string, d *Device) {
	p.secureHeaders(w)
	v := &deviceView{State: d.State, UserCode: d.UserCode, Prefilled: d.Prefilled}
	v.Consent = (&Consent{ClientID: d.ClientID, ClientName: d.ClientName, Scopes: d.Scopes, Audience: d.Audience, Flow: d.Flow}).view()
	title, ok := deviceTitles[d.State]
	if !ok {
		title = deviceTitles["enter"]
	}
	data := &pageData{Title: title, Error: d.Error, Device: v}
	if username != "" {
		data.User = p.named(username)
	}
	p.render(w, r, status, "device", data)
}
