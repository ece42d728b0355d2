// Package notify sends messages to people: the one-time codes that prove who they are before a
// sensitive change, password-reset links, and notices of changes made to their account. A
// message is rendered from embedded templates (a plain-text and an HTML part) and delivered by
// SMTP or, for a quick start or a test, appended to a file (Authelia's notifier block).
package notify

import (
	"context"
	"errors"
	"time"
)

// ErrUndeliverable wraps every failure to hand a message over (the SMTP server refused it or
// could not be reached, the file could not be written).
var ErrUndeliverable = errors.New("notify: the message could not be delivered")

// Recipient is who a message goes to.
type Recipient struct {
	// Name is the person's display name ("" for none).
	Name string
	// Address is the mail address.
	Address string
}

// Kind is which template a Message is rendered from.
type Kind string

// The kinds of message.
const (
	// KindCode carries a one-time code that proves the person reads this mailbox (Code,
	// Lifespan).
	KindCode Kind = "code"
	// KindResetLink carries a one-time link to set a new password (Link, Lifespan).
	KindResetLink Kind = "reset"
	// KindEvent tells the person of a change to their account (Event), so a change they did not
	// make does not go unseen.
	KindEvent Kind = "event"
)

// Message is one message to a person.
type Message struct {
	// Kind is the template it is rendered from.
	Kind Kind
	// Title is the subject's {title} and the page heading ("Confirm it is you").
	Title string
	// Code is KindCode's one-time code.
	Code string
	// Link is KindResetLink's link.
	Link string
	// Event is KindEvent's sentence ("Your password was changed.").
	Event string
	// Lifespan is how long Code or Link stays valid.
	Lifespan time.Duration
	// RemoteIP is the address the request came from, shown so the person can tell whether it
	// was theirs ("" to leave it out).
	RemoteIP string
	// When is when the request was made.
	When time.Time
}

// Notifier delivers messages. Implementations are safe for concurrent use.
type Notifier interface {
	// Send renders msg and delivers it to to; an error wraps ErrUndeliverable.
	Send(ctx context.Context, to Recipient, msg Message) error
	// Check tells whether messages can be delivered now (SMTP: connect, TLS, authenticate;
	// filesystem: the file can be opened for appending). The provider calls it at start and
	// logs a failure; it never stops the server.
	Check(ctx context.Context) error
}
