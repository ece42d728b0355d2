package notify

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"
	"time"
)

//go:embed templates
var templateFS embed.FS

// kinds are the templates of each Kind: a plain-text and an HTML one.
var kinds = map[Kind]struct {
	text *texttemplate.Template
	html *htmltemplate.Template
}{}

func init() {
	for _, k := range []Kind{KindCode, KindResetLink, KindEvent} {
		t := texttemplate.Must(texttemplate.New(string(k)+".txt").Option("missingkey=error").
			ParseFS(templateFS, "templates/footer.txt", "templates/"+string(k)+".txt"))
		h := htmltemplate.Must(htmltemplate.New("layout.html").Option("missingkey=error").
			ParseFS(templateFS, "templates/layout.html", "templates/"+string(k)+".html"))
		kinds[k] = struct {
			text *texttemplate.Template
			html *htmltemplate.Template
		}{t, h}
	}
}

// defaultTitles are the titles of messages that come without one.
var defaultTitles = map[Kind]string{
	KindCode:      "Your one-time code",
	KindResetLink: "Set a new password",
	KindEvent:     "A change to your account",
}

// view is what the templates see.
type view struct {
	Title    string
	Greeting string
	Code     string
	Link     string
	Event    string
	Lifespan string
	RemoteIP string
	When     string
	Origin   string
}

// rendered is a message ready to deliver.
type rendered struct {
	Title string // one line
	Text  string
	HTML  string // "" when not asked for
}

// errBadMessage is a message the notifier cannot render (a caller's mistake).
var errBadMessage = errors.New("notify: the message is incomplete")

// oneLine removes line breaks and other control characters, so a name or title can never add
// a header or a line of its own.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == 0x2028 || r == 0x2029 || r == 0x85 {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// render checks msg and renders its parts for to.
func render(to Recipient, msg Message, withHTML bool) (rendered, error) {
	v := view{
		Title:    oneLine(msg.Title),
		Greeting: "Hello,",
		Event:    oneLine(msg.Event),
		Lifespan: humanDuration(msg.Lifespan),
		RemoteIP: oneLine(msg.RemoteIP),
		Origin:   "This request",
	}
	if name := oneLine(to.Name); name != "" {
		v.Greeting = "Hello " + name + ","
	}
	if v.Title == "" {
		v.Title = defaultTitles[msg.Kind]
	}
	when := msg.When
	if when.IsZero() {
		when = time.Now()
	}
	v.When = when.UTC().Format("Mon, 2 Jan 2006 15:04 MST")
	switch msg.Kind {
	case KindCode:
		v.Code = oneLine(msg.Code)
		if v.Code == "" || msg.Lifespan <= 0 {
			return rendered{}, fmt.Errorf("%w: a code message needs Code and Lifespan", errBadMessage)
		}
	case KindResetLink:
		v.Link = oneLine(msg.Link)
		if !strings.HasPrefix(v.Link, "https://") && !strings.HasPrefix(v.Link, "http://") || msg.Lifespan <= 0 {
			return rendered{}, fmt.Errorf("%w: a reset message needs an http(s) Link and a Lifespan", errBadMessage)
		}
	case KindEvent:
		if v.Event == "" {
			return rendered{}, fmt.Errorf("%w: an event message needs Event", errBadMessage)
		}
		v.Origin = "This change"
	default:
		return rendered{}, fmt.Errorf("%w: unknown kind %q", errBadMessage, msg.Kind)
	}
	t := kinds[msg.Kind]
	var b bytes.Buffer
	if err := t.text.Execute(&b, v); err != nil {
		return rendered{}, fmt.Errorf("notify: rendering the %s text: %w", msg.Kind, err)
	}
	r := rendered{Title: v.Title, Text: b.String()}
	if withHTML {
		b.Reset()
		if err := t.html.Execute(&b, v); err != nil {
			return rendered{}, fmt.Errorf("notify: rendering the %s HTML: %w", msg.Kind, err)
		}
		r.HTML = b.String()
	}
	return r, nil
}

// humanDuration writes d as people do: "5 minutes", "1 hour 30 minutes", "2 days".
func humanDuration(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	d = d.Round(time.Second)
	parts := []struct {
		unit time.Duration
		name string
	}{{24 * time.Hour, "day"}, {time.Hour, "hour"}, {time.Minute, "minute"}, {time.Second, "second"}}
	var out []string
	for _, p := range parts {
		if n := d / p.unit; n > 0 {
			d -= n * p.unit
			s := fmt.Sprintf("%d %s", n, p.name)
			if n != 1 {
				s += "s"
			}
			out = append(out, s)
			if len(out) == 2 {
				break
			}
		}
	}
	return strings.Join(out, " ")
}
