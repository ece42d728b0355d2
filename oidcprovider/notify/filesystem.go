package notify

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// FileSystem appends every message to a file instead of sending it: what the quick start and
// tests use. Each entry is a block of header lines (date, recipient, subject) and the
// plain-text body, between separator lines, so the code or link is easy to find with tail or
// grep. It is safe for concurrent use.
type FileSystem struct {
	name   string
	logger *zap.Logger
	mu     sync.Mutex
}

var _ Notifier = (*FileSystem)(nil)

func newFileSystem(c FileSystemConfig, logger *zap.Logger) (*FileSystem, error) {
	if err := checkDir(c.Filename); err != nil {
		return nil, err
	}
	return &FileSystem{name: c.Filename, logger: logger}, nil
}

// Filename is the file messages are appended to.
func (f *FileSystem) Filename() string { return f.name }

// Separator begins every entry FileSystem writes.
const Separator = "==================== Portcullis notification ===================="

// Send appends msg to the file.
func (f *FileSystem) Send(ctx context.Context, to Recipient, msg Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUndeliverable, err)
	}
	addr, err := recipientAddress(to)
	if err != nil {
		return err
	}
	r, err := render(to, msg, false)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUndeliverable, err)
	}
	var b strings.Builder
	b.WriteString(Separator + "\n")
	b.WriteString("Date: " + time.Now().UTC().Format(time.RFC1123Z) + "\n")
	if addr.Name != "" {
		b.WriteString("To: " + addr.Name + " <" + addr.Address + ">\n")
	} else {
		b.WriteString("To: " + addr.Address + "\n")
	}
	b.WriteString("Subject: " + r.Title + "\n")
	switch msg.Kind {
	case KindCode:
		b.WriteString("Code: " + oneLine(msg.Code) + "\n")
	case KindResetLink:
		b.WriteString("Link: " + oneLine(msg.Link) + "\n")
	}
	b.WriteString("\n")
	b.WriteString(strings.TrimRight(r.Text, "\n") + "\n\n")

	f.mu.Lock()
	defer f.mu.Unlock()
	file, err := os.OpenFile(f.name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("%w: notifier filesystem: %w", ErrUndeliverable, err)
	}
	// One Write call, so entries stay whole even if another process appends too.
	_, werr := file.WriteString(b.String())
	cerr := file.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("%w: notifier filesystem: writing %s: %w", ErrUndeliverable, f.name, err)
	}
	f.logger.Debug("notification written to file", zap.String("kind", string(msg.Kind)), zap.String("file", f.name))
	return nil
}

// Check opens the file for appending (creating it with mode 0600 if missing).
func (f *FileSystem) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUndeliverable, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	file, err := os.OpenFile(f.name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("%w: notifier filesystem: %w", ErrUndeliverable, err)
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("%w: notifier filesystem: %w", ErrUndeliverable, err)
	}
	return nil
}

// recipientAddress checks to's address (one plain address, no line breaks, no display name of
// its own) and returns it with to's name made one line.
func recipientAddress(to Recipient) (*mail.Address, error) {
	if to.Address == "" || strings.ContainsAny(to.Address, "\x00\r\n<>,; \t") {
		return nil, fmt.Errorf("%w: %q is not a single mail address", ErrUndeliverable, to.Address)
	}
	a, err := mail.ParseAddress(to.Address)
	if err != nil || a.Name != "" || a.Address != to.Address {
		return nil, fmt.Errorf("%w: %q is not a single mail address", ErrUndeliverable, to.Address)
	}
	return &mail.Address{Name: oneLine(to.Name), Address: a.Address}, nil
}
