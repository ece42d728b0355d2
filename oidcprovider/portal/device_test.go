package portal

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Each state of the device page renders in the portal's layout: the code form (with the code
// filled in from the device's link, escaped), the consent naming the application, the code and
// what it asks for, with a CSRF token in every form, and the answers.
func TestDevicePageStates(t *testing.T) {
	w := newPortalWorld(t)
	for _, c := range []struct {
		d    Device
		user string
		want []string
	}{
		{Device{State: "enter"}, "", []string{"Connect a device", `name="user_code"`, `name="action" value="code"`, `name="csrf" value="`}},
		{Device{State: "enter", UserCode: `WDJB-MJHT"><script>`, Prefilled: true}, "", []string{"Check that this is the code", `value="WDJB-MJHT&#34;&gt;&lt;script&gt;"`}},
		{Device{State: "consent", UserCode: "WDJB-MJHT", ClientID: "tv", ClientName: "Living-room TV", Scopes: []string{"openid", "offline_access"}, Flow: "F1"}, "john",
			[]string{"Allow this device?", "Hi John Doe", "Living-room TV", "WDJB-MJHT", "Know who you are", "Stay connected", `name="flow" value="F1"`, `value="approve"`, `value="deny"`, `name="csrf" value="`, "Never allow a code someone else gave you"}},
		{Device{State: "approved", ClientName: "Living-room TV"}, "john", []string{"Device connected", "Go back to your device"}},
		{Device{State: "denied", ClientName: "Living-room TV"}, "john", []string{"Device refused", "got nothing"}},
		{Device{State: "locked", Error: "Too many wrong codes were typed from your network."}, "", []string{"Too many wrong codes", "from your network", `href="/device"`}},
	} {
		rec := httptest.NewRecorder()
		w.p.RenderDevice(rec, httptest.NewRequest(http.MethodGet, "/device", nil), http.StatusOK, c.user, &c.d)
		body := rec.Body.String()
		if rec.Code != http.StatusOK || !strings.Contains(body, `<link rel="stylesheet"`) || rec.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("%s: %d, no layout or CSP", c.d.State, rec.Code)
		}
		for _, s := range c.want {
			if !strings.Contains(body, s) {
				t.Errorf("%s: the page lacks %q:\n%s", c.d.State, s, body)
			}
		}
	}
}
